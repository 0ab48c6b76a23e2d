"""``mcplane call``, ``list``, ``read`` and ``prompt``: one request to a server, its answer printed.

``call``, ``read`` and ``prompt`` print the result as JSON (``call`` exits 1 when the result is an
error result); ``list`` prints one line per tool, resource, resource template and prompt, or the
full definitions with ``--json``. Reaching the server: :mod:`mcplane.cli.connect`.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from mcplane.cli.connect import ask
from mcplane.cli.output import EXIT_ERROR, print_json
from mcplane.errors import ConfigError

if TYPE_CHECKING:
    from mcplane.client import Client

__all__ = ["call", "get_prompt", "list_features", "read"]

_PAGE_CAP = 100
_METHOD_NOT_FOUND = -32601
_SECTIONS = {
    "tools": ("tools", "tools"),
    "resources": ("resources", "resources"),
    "templates": ("resourceTemplates", "resource templates"),
    "prompts": ("prompts", "prompts"),
}
"""``--kind`` → (JSON key, heading)."""


def _dump(model: Any) -> dict[str, Any]:
    return model.model_dump(by_alias=True, mode="json", exclude_none=True)


def call(args: argparse.Namespace) -> int:
    try:
        arguments = orjson.loads(args.args)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"--args is not valid JSON: {exc}") from None
    if not isinstance(arguments, dict):
        raise ConfigError("--args must be a JSON object")

    async def request(client: Client) -> dict[str, Any]:
        return _dump(await client.call_tool(args.tool, arguments))

    result = ask(args, "call", request)
    print_json(result)
    return EXIT_ERROR if result.get("isError") else 0


def read(args: argparse.Namespace) -> int:
    async def request(client: Client) -> dict[str, Any]:
        return _dump(await client.sdk.read_resource(args.uri))

    print_json(ask(args, "read", request))
    return 0


def get_prompt(args: argparse.Namespace) -> int:
    arguments: dict[str, str] = {}
    for item in args.arg or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--arg {item!r}: expected NAME=VALUE")
        arguments[name.strip()] = value

    async def request(client: Client) -> dict[str, Any]:
        return _dump(await client.sdk.get_prompt(args.name, arguments or None))

    print_json(ask(args, "prompt", request))
    return 0


def list_features(args: argparse.Namespace) -> int:
    kinds = list(_SECTIONS) if args.kind == "all" else [args.kind]

    async def request(client: Client) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for kind in kinds:
            found[kind] = await _all_pages(client, kind, quiet_if_unsupported=args.kind == "all")
        return found

    found = ask(args, "list", request)
    if args.json:
        print_json({_SECTIONS[kind][0]: items for kind, items in found.items()})
        return 0
    for kind, items in found.items():
        heading = _SECTIONS[kind][1]
        if not items:
            print(f"{heading}: none")
            continue
        print(f"{heading}:")
        rows = [_row(kind, item) for item in items]
        width = max(len(left) for left, _ in rows)
        for left, right in rows:
            print(f"  {left.ljust(width)}  {right}".rstrip())
    return 0


async def _all_pages(client: Client, kind: str, *, quiet_if_unsupported: bool) -> list[dict[str, Any]]:
    from mcp.shared.exceptions import MCPError

    sdk = client.sdk
    fetch: dict[str, Callable[[str | None], Awaitable[Any]]] = {
        "tools": lambda cursor: sdk.list_tools(cursor=cursor),
        "resources": lambda cursor: sdk.list_resources(cursor=cursor),
        "templates": lambda cursor: sdk.list_resource_templates(cursor=cursor),
        "prompts": lambda cursor: sdk.list_prompts(cursor=cursor),
    }
    field = {"tools": "tools", "resources": "resources", "templates": "resource_templates", "prompts": "prompts"}
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(_PAGE_CAP):
        try:
            page = await fetch[kind](cursor)
        except MCPError as exc:
            if quiet_if_unsupported and exc.code == _METHOD_NOT_FOUND:
                return []  # the server does not offer this kind at all
            raise
        items.extend(_dump(item) for item in getattr(page, field[kind]))
        cursor = page.next_cursor
        if cursor is None:
            break
    return items


def _row(kind: str, item: dict[str, Any]) -> tuple[str, str]:
    """One listing line: what to use (a name, a URI, a prompt with its arguments) and what it is."""
    about = _first_line(item.get("description") or item.get("title") or "")
    if kind == "tools":
        return item["name"], about
    if kind == "resources":
        return item["uri"], _joined(item.get("name", ""), about)
    if kind == "templates":
        return item["uriTemplate"], _joined(item.get("name", ""), about)
    arguments = [a["name"] if a.get("required") else f"[{a['name']}]" for a in item.get("arguments") or ()]
    return f"{item['name']}({', '.join(arguments)})", about


def _joined(name: str, about: str) -> str:
    return f"{name}: {about}" if name and about else name or about


def _first_line(text: str, width: int = 100) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"

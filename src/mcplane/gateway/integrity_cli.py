"""``mcplane gateway lock | quarantine | approve``: pin upstream tools, see and approve changes.

* ``mcplane gateway lock --config gateway.yaml [--output FILE]`` connects to every upstream (as the
  gateway would), hashes each tool's definition and scans it, and writes the lock file (JSON,
  upstream then tool order, see :mod:`mcplane.gateway.pins`) to ``FILE`` (default: the config's
  ``integrity.lock_file``, else standard output). An upstream that does not connect is an error:
  a lock without its tools would refuse them all under ``mode: lock``.
* ``mcplane gateway quarantine --url URL`` prints the running gateway's withheld tools (JSON).
* ``mcplane gateway approve UPSTREAM TOOL [--hash H] --url URL`` approves one: its current
  definition becomes the pin and is served. ``--hash`` (the 12-digit prefix the log line and
  ``quarantine`` show) makes sure the approved definition is the one reviewed.

``quarantine`` and ``approve`` talk to the gateway's ``/integrity/...`` endpoints (see
:mod:`mcplane.gateway.integrity_http`) with ``--token`` (or ``$MCPLANE_TOKEN``) as bearer, so every
replica's approval goes through the same authentication and the same state store.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mcplane.errors import ConfigError

__all__ = ["COMMANDS", "add_commands", "main"]

COMMANDS = ("lock", "quarantine", "approve")
EXIT_ERROR = 1
HTTP_TIMEOUT = 30.0


def add_commands(actions: Any) -> None:
    """The three commands, on the ``mcplane gateway`` sub-parsers ``actions``."""
    lock = actions.add_parser("lock", help="connect to the upstreams and write a lock file of their tools' hashes")
    lock.add_argument(
        "--config",
        default=os.environ.get("MCPLANE_GATEWAY_CONFIG"),
        metavar="FILE",
        help="gateway.yaml (or $MCPLANE_GATEWAY_CONFIG)",
    )
    lock.add_argument(
        "--output",
        metavar="FILE",
        help="where to write it ('-': standard output; default: integrity.lock_file, else standard output)",
    )
    quarantine = actions.add_parser("quarantine", help="list a running gateway's quarantined tools")
    _remote(quarantine)
    approve = actions.add_parser("approve", help="approve a quarantined tool's current definition")
    approve.add_argument("upstream", help="the upstream's name in gateway.yaml")
    approve.add_argument("tool", help="the tool's name at the upstream (not namespaced)")
    approve.add_argument("--hash", metavar="H", help="the definition's hash (or its 12-digit prefix) you reviewed")
    _remote(approve)


def _remote(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--url", default="http://127.0.0.1:8000", help="the gateway's base URL (its /integrity/... endpoints)"
    )
    command.add_argument(
        "--token",
        default=None,
        help="bearer credential with an integrity.admin role or scope (default: $MCPLANE_TOKEN)",
    )


def _parser() -> argparse.ArgumentParser:
    from mcplane.cli.parser import Parser

    parser = Parser(prog="mcplane gateway", description="Pin upstream tools; list and approve changed ones.")
    add_commands(parser.add_subparsers(dest="action", required=True, metavar="ACTION"))
    return parser


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    try:
        if args.action == "lock":
            return _lock(args)
        if args.action == "quarantine":
            print(json.dumps(_call(args, "GET", "/integrity/quarantine"), indent=2))
            return 0
        body = {"upstream": args.upstream, "tool": args.tool, "hash": args.hash}
        approved = _call(args, "POST", "/integrity/approve", body)["approved"]
        print(f"approved {approved['upstream']} {approved['tool']} {approved['current']}")
        return 0
    except ConfigError as exc:
        print(f"mcplane: error: {' '.join(exc.message.split())}", file=sys.stderr)
        return EXIT_ERROR


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    import httpx

    token = args.token or os.environ.get("MCPLANE_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = args.url.rstrip("/") + path
    try:
        response = httpx.request(method, url, json=body, headers=headers, timeout=HTTP_TIMEOUT)
    except httpx.HTTPError as exc:
        raise ConfigError(f"{url}: {exc}") from None
    try:
        answer: Any = response.json()
    except ValueError:
        answer = None
    if response.status_code != 200 or not isinstance(answer, dict):
        error: Any = answer.get("error") if isinstance(answer, dict) else None  # pyright: ignore[reportUnknownMemberType]
        message = error.get("message") if isinstance(error, dict) else response.reason_phrase  # pyright: ignore[reportUnknownMemberType]
        raise ConfigError(f"{url}: {response.status_code} {message}")
    return answer  # pyright: ignore[reportUnknownVariableType]


def _lock(args: argparse.Namespace) -> int:
    import anyio

    from mcplane.gateway.config import load_gateway_config

    if args.config is None:
        raise ConfigError("--config is required (or set MCPLANE_GATEWAY_CONFIG)")
    config = load_gateway_config(args.config)
    text, count = anyio.run(_lock_text, config)
    output = args.output or config.integrity.lock_file
    if output is None or output == "-":
        sys.stdout.write(text)
    else:
        Path(output).write_text(text, encoding="utf-8")
        print(f"wrote {count} tool pins to {output}", file=sys.stderr)
    return 0


async def _lock_text(config: Any) -> tuple[str, int]:
    """Connect (as the gateway would, with integrity off: nothing is withheld), hash and scan each tool."""
    from mcplane.gateway.config import IntegrityConfig
    from mcplane.gateway.gateway import Gateway
    from mcplane.gateway.injection import scan
    from mcplane.gateway.pins import LockEntry, definition_hash, definition_of, render_lock

    unpinned = config.model_copy(update={"integrity": IntegrityConfig(enabled=False)})
    plane = Gateway.from_config(unpinned)
    limits = config.integrity.scan
    entries: list[LockEntry] = []
    async with plane.lifespan():
        provider = Gateway.provider_of(plane)
        for name, upstream in provider.upstreams.items():
            if not any(endpoint.connected for endpoint in upstream.endpoints):
                raise ConfigError(f"upstream {name!r} did not connect; its tools cannot be locked")
            for tool in upstream.catalog.tools.values():
                findings = scan(definition_of(tool), max_bytes=limits.max_bytes, max_depth=limits.max_depth)
                entries.append(LockEntry(name, tool.name, definition_hash(tool), [f.to_dict() for f in findings]))
    return render_lock(entries), len(entries)

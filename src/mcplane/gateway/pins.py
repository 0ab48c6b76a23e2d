"""Tool definitions and their pins: the canonical hash, and the lock file that records them.

A tool's **definition** is what a model reads of it and what decides how it is called: its name,
title, description, input and output schemas and annotations (:func:`definition_of`, keys in the
wire's spelling, absent parts left out). Its **hash** is SHA-256 over the definition's canonical
JSON: keys sorted, no whitespace, UTF-8 (:func:`definition_hash`); the encoder is iterative, so
a hostile nesting depth costs time linear in its size and never a recursion error.

The **lock file** (``mcplane gateway lock`` writes it) is JSON, one entry per upstream tool in
upstream then tool order, with the scan findings of each so a reviewer sees what was pinned::

    {"version": 1, "tools": [{"upstream": "everything", "tool": "echo", "hash": "sha256:…", "findings": []}]}
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp_types import Tool

from mcplane.errors import ConfigError

__all__ = [
    "HASH_PREFIX",
    "LOCK_VERSION",
    "LockEntry",
    "canonical_json",
    "definition_hash",
    "definition_of",
    "read_lock",
    "render_lock",
    "short",
]

HASH_PREFIX = "sha256:"
LOCK_VERSION = 1


def definition_of(tool: Tool) -> dict[str, Any]:
    """The parts of ``tool`` that are pinned, in the wire's spelling."""
    definition: dict[str, Any] = {"name": tool.name, "inputSchema": tool.input_schema}
    if tool.title is not None:
        definition["title"] = tool.title
    if tool.description is not None:
        definition["description"] = tool.description
    if tool.output_schema is not None:
        definition["outputSchema"] = tool.output_schema
    if tool.annotations is not None:
        definition["annotations"] = tool.annotations.model_dump(by_alias=True, exclude_none=True, mode="json")
    return definition


def canonical_json(value: Any) -> str:
    """``value`` as JSON with sorted keys and no whitespace, built without recursion."""
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Raw):
            out.append(item.text)
        elif isinstance(item, Mapping):
            pairs: list[tuple[str, Any]] = sorted(
                ((str(k), v) for k, v in item.items()),  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
                key=_first,
            )
            parts: list[Any] = [_Raw("{")]
            for index, (key, child) in enumerate(pairs):
                if index:
                    parts.append(_Raw(","))
                parts.append(_Raw(json.dumps(key, ensure_ascii=False) + ":"))
                parts.append(child)
            parts.append(_Raw("}"))
            stack.extend(reversed(parts))
        elif isinstance(item, list | tuple):
            parts = [_Raw("[")]
            for index, child in enumerate(item):  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
                if index:
                    parts.append(_Raw(","))
                parts.append(child)
            parts.append(_Raw("]"))
            stack.extend(reversed(parts))
        elif item is None or isinstance(item, bool | int | float | str):
            out.append(json.dumps(item, ensure_ascii=False))
        else:
            out.append(json.dumps(str(item), ensure_ascii=False))
    return "".join(out)


def _first(pair: tuple[str, Any]) -> str:
    return pair[0]


@dataclass(frozen=True, slots=True)
class _Raw:
    text: str


def definition_hash(tool: Tool) -> str:
    """``sha256:<hex>`` of ``tool``'s canonical definition."""
    digest = hashlib.sha256(canonical_json(definition_of(tool)).encode("utf-8", "surrogatepass")).hexdigest()
    return HASH_PREFIX + digest


def short(digest: str) -> str:
    """A hash as logs and errors show it: its first 12 hex digits."""
    return digest.removeprefix(HASH_PREFIX)[:12]


@dataclass(frozen=True, slots=True)
class LockEntry:
    upstream: str
    tool: str
    hash: str
    findings: list[dict[str, str]] = field(default_factory=lambda: [])


def render_lock(entries: Iterable[LockEntry]) -> str:
    """The lock file's text: entries in upstream then tool order, two-space indented, newline-ended."""
    ordered = sorted(entries, key=lambda e: (e.upstream, e.tool))
    body = {
        "version": LOCK_VERSION,
        "tools": [{"upstream": e.upstream, "tool": e.tool, "hash": e.hash, "findings": e.findings} for e in ordered],
    }
    return json.dumps(body, indent=2, ensure_ascii=False) + "\n"


def read_lock(path: str | Path) -> dict[tuple[str, str], str]:
    """The pins of a lock file, by (upstream, tool); a missing or malformed file is a ConfigError."""
    try:
        body: Any = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"integrity.lock_file: cannot read {str(path)!r}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(f"integrity.lock_file: {str(path)!r} is not JSON") from None
    tools: Any = body.get("tools") if isinstance(body, dict) else None
    if not isinstance(tools, list) or body.get("version") != LOCK_VERSION:  # pyright: ignore[reportUnknownMemberType]
        raise ConfigError(f"integrity.lock_file: {str(path)!r} is not a version {LOCK_VERSION} lock file")
    pins: dict[tuple[str, str], str] = {}
    for index, entry in enumerate(tools):  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(key), str)  # pyright: ignore[reportUnknownMemberType]
            for key in ("upstream", "tool", "hash")
        ):
            raise ConfigError(f"integrity.lock_file: {str(path)!r}: tools[{index}] needs upstream, tool and hash")
        pins[(entry["upstream"], entry["tool"])] = entry["hash"]  # pyright: ignore[reportUnknownArgumentType]
    return pins

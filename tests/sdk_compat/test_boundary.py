"""Every use of an SDK private name stays inside ``mcplane.sdk_adapter``.

The source tree is read with ``ast``; outside the adapter package a module may not import from an
``mcp`` module path with a ``_``-prefixed segment (or import a ``_``-prefixed name from ``mcp``),
reach a private attribute of the SDK's (one the adapter wraps) on anything but ``self``/``cls``,
or define a ``_handle_*`` method (an override of the SDK server's handlers).

:data:`KNOWN_OUTSIDE` would list uses still outside, each by count; it is empty, and may only
shrink: an entry whose count drops fails until it is lowered, so a fixed use cannot return.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import mcplane

SOURCE = Path(mcplane.__file__).parent
ADAPTER = "sdk_adapter"

SDK_PRIVATE = frozenset(
    {
        # mcp.server.mcpserver.MCPServer
        "_lowlevel_server",
        "_tool_manager",
        "_prompt_manager",
        "_resource_manager",
        "_subscriptions",
        "_tool_input_schema",
        # the low-level server's cached serverInfo dump
        "_server_info_stamp_source",
        # the resource manager, the low-level server
        "_resources",
        "_templates",
        "_request_handlers",
        # mcp.server.streamable_http_manager / streamable_http
        "_server_instances",
        "_session_owners",
        "_session_creation_lock",
        "_lifespan_state",
        "_discard_session",
        "_admit_session",
        "_requests_in_flight",
        "_handle_request",
        "_idle_timeout",
        "_request_streams",
        # mcp.client.session.ClientSession, mcp.client.Client
        "_stamp",
        "_dispatcher",
        "_negotiated_version",
        "_call_tool_adapter",
        "_relist_tool",
        "_clamp_inbound_ttl",
        "_later_revision_fields",
        "_tool_output_schemas",
        # mcp.server.mcpserver.utilities.func_metadata.FuncMetadata
        "_output_adapter",
        # mcp.server.mcpserver.Context
        "_request_context",
        "_mcp_server",
    }
)
"""The SDK's private names the adapter wraps."""

KNOWN_OUTSIDE: dict[tuple[str, str], int] = {}
"""Uses outside the adapter, by module and name, in lines being rewritten elsewhere (shrink only)."""


def _violations(path: Path) -> list[tuple[str, int]]:
    """``(what, line)`` for each boundary crossing in ``path``."""
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            parts = node.module.split(".")
            if parts[0] == "mcp":
                if any(part.startswith("_") for part in parts):
                    found.append((f"import from {node.module}", node.lineno))
                found.extend((f"import {a.name}", node.lineno) for a in node.names if a.name.startswith("_"))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "mcp" and any(part.startswith("_") for part in parts):
                    found.append((f"import {alias.name}", node.lineno))
        elif isinstance(node, ast.Attribute) and node.attr in SDK_PRIVATE:
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                found.append((node.attr, node.lineno))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("_handle_"):
            found.append((f"def {node.name}", node.lineno))
    return found


def _crossings() -> dict[str, list[tuple[str, int]]]:
    crossings: dict[str, list[tuple[str, int]]] = {}
    for path in sorted(SOURCE.rglob("*.py")):
        relative = path.relative_to(SOURCE).as_posix()
        if relative.split("/")[0] == ADAPTER:
            continue
        if found := _violations(path):
            crossings[relative] = found
    return crossings


def test_sdk_private_names_stay_in_the_adapter() -> None:
    counts: Counter[tuple[str, str]] = Counter()
    unexpected: list[str] = []
    for module, found in _crossings().items():
        for what, line in found:
            counts[(module, what)] += 1
            if (module, what) not in KNOWN_OUTSIDE:
                unexpected.append(f"{module}:{line}: {what}")
    assert unexpected == [], "SDK internals used outside mcplane.sdk_adapter (add an adapter function)"
    for key, allowed in KNOWN_OUTSIDE.items():
        assert counts[key] <= allowed, f"{key}: {counts[key]} uses, more than the {allowed} known"
        assert counts[key] == allowed, f"{key}: down to {counts[key]}; lower KNOWN_OUTSIDE to match"


def test_the_check_sees_each_kind_of_crossing(tmp_path: Path) -> None:
    source = tmp_path / "module.py"
    source.write_text(
        "from mcp.server._otel import X\n"
        "from mcp.client.session import _clamp_inbound_ttl\n"
        "import mcp.shared._context_streams\n"
        "x = plane.sdk._lowlevel_server\n"
        "y = self._lowlevel_server\n"
        "z = thing._private_of_ours\n"
        "class S:\n"
        "    async def _handle_call_tool(self): ...\n",
        encoding="utf-8",
    )
    assert [what for what, _ in _violations(source)] == [
        "import from mcp.server._otel",
        "import _clamp_inbound_ttl",
        "import mcp.shared._context_streams",
        "_lowlevel_server",
        "def _handle_call_tool",
    ]


def test_the_adapter_lists_what_it_wraps() -> None:
    import mcplane.sdk_adapter as adapter

    doc = adapter.__doc__ or ""
    modules = sorted(p.stem for p in (SOURCE / ADAPTER).glob("*.py") if p.stem != "__init__")
    assert [m for m in modules if f"sdk_adapter.{m}`" not in doc] == []

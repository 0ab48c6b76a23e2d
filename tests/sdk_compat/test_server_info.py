"""Server-info stamping: a 2026-07-28 result carries the server's ``serverInfo`` in ``_meta`` unless
the tool put one there (an explicit ``null`` is stamped over); 2025-11-25 results never do."""

from __future__ import annotations

from typing import Any

import pytest
from mcp_types import CallToolResult, TextContent

from mcplane import Plane
from mcplane.sdk_adapter.mcpserver import server_info_stamp, server_info_stamp_shared
from tests.sdk_compat.wire import ERAS, Era, answers_of, tool_call

SERVER_INFO = "io.modelcontextprotocol/serverInfo"
METAS: dict[str, dict[str, Any] | None] = {
    "no-meta": None,
    "own-meta": {"vendor/key": [1, "ü"]},
    "own-server-info": {SERVER_INFO: {"name": "the-tool", "version": "1"}, "k": 1},
    "null-server-info": {SERVER_INFO: None},
    "empty-meta": {},
}


def plane_named(name: str, version: str | None) -> Plane:
    plane = Plane(name, version=version)

    @plane.tool()
    async def stamped(case: str) -> CallToolResult:
        return CallToolResult(content=[TextContent(type="text", text=case)], _meta=METAS[case])

    return plane


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize(("name", "version"), [("compat", None), ("ünï ☃", "2.0.0-rc.1")], ids=["plain", "unicode"])
@pytest.mark.parametrize("case", list(METAS))
async def test_server_info_is_stamped_as_the_sdk_stamps_it(era: Era, name: str, version: str | None, case: str) -> None:
    compared = await answers_of(lambda: plane_named(name, version), era, [tool_call("stamped", {"case": case})])
    assert compared.fast == compared.sdk
    assert compared.served == 1
    meta = compared.fast[0].body["result"].get("_meta")
    if era.endswith("2025"):
        assert (meta or {}).get(SERVER_INFO) == (METAS[case] or {}).get(SERVER_INFO)  # the tool's own, if any
    elif case != "own-server-info":
        assert meta[SERVER_INFO]["name"] == name


@pytest.mark.parametrize(("name", "version"), [("compat", None), ("ünï ☃", "2.0.0-rc.1")], ids=["plain", "unicode"])
def test_the_shared_stamp_is_what_the_sdk_stamps(name: str, version: str | None) -> None:
    plane = plane_named(name, version)
    shared = server_info_stamp_shared(plane.sdk)
    assert shared == server_info_stamp(plane.sdk)
    assert shared is server_info_stamp_shared(plane.sdk)  # the SDK's one dump, not a copy per call
    assert shared is not server_info_stamp(plane.sdk)

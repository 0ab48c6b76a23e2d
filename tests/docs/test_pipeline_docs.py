"""docs/pipeline.md, checked: the slot table is the pipeline's order, and the middleware snippet,
set in the ``app`` slot, changes and refuses real calls through the official SDK client."""

from __future__ import annotations

import re
from typing import Any

from mcp import Client
from tests.conftest import REPO_ROOT, error_of

from mcplane import Plane
from mcplane.pipeline import SLOTS

DOC = (REPO_ROOT / "docs" / "pipeline.md").read_text(encoding="utf-8")


def test_the_table_lists_every_slot_in_order() -> None:
    table = DOC.split("| slot | filled when | why here |", 1)[1].split("\n\n", 1)[0]
    listed = [name for row in table.splitlines()[1:] for name in re.findall(r"`([a-z_]+)`", row.split("|")[1])]
    assert tuple(listed) == SLOTS
    chain = DOC.split("```\n", 1)[1].split("```", 1)[0]
    assert tuple(re.findall(r"[a-z_]+", chain))[:-1] == SLOTS  # the last word is the provider


async def test_the_snippet_normalizes_and_refuses() -> None:
    snippet = DOC.split("<!-- pipeline-middleware -->\n```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(snippet, "pipeline.md", "exec"), namespace)
    plane: Plane = namespace["plane"]
    assert plane.pipeline.get("app") is not None
    async with Client(plane.sdk) as client:
        normalized = await client.call_tool("price", {"sku": "  ab-1 "})
        blank = await client.call_tool("price", {"sku": "   "})
    assert normalized.is_error is False
    assert normalized.content[0].text == "AB-1: 9.50"  # pyright: ignore[reportAttributeAccessIssue]
    assert blank.is_error is True
    error = error_of(blank)
    assert (error["code"], error["message"]) == ("invalid_arguments", "sku is blank")

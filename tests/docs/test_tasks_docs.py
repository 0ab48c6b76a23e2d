"""docs/tasks.md, checked: its server snippet is a plane whose tool answers with a task handle,
and the task settles with the tool's result, read through the official SDK client."""

from __future__ import annotations

import re
from typing import Any

from mcp_types import CallToolResult
from tests.conftest import REPO_ROOT
from tests.tasks.conftest import CreateTaskResult, connect, wait_status

from mcplane import Plane

DOC = (REPO_ROOT / "docs" / "tasks.md").read_text(encoding="utf-8")


def _plane() -> Plane:
    snippet = DOC.split("<!-- tasks-server -->\n```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(snippet, "tasks.md", "exec"), namespace)
    plane = namespace["plane"]
    assert isinstance(plane, Plane)
    return plane


async def test_the_snippet_answers_with_a_task_and_settles_with_the_result() -> None:
    plane = _plane()
    async with connect(plane) as client:
        created = await client.call("render", {"scene": "harbour"})
        assert isinstance(created, CreateTaskResult)
        assert created.status == "working"
        assert "result" not in (created.model_extra or {})
        await wait_status(plane, created.task_id, "completed")
        done = await client.get(created.task_id)
    assert done["status"] == "completed"
    assert done["result"]["isError"] is False
    assert done["result"]["content"][0]["text"] == "harbour: rendered"


async def test_a_client_without_the_extension_gets_the_result_directly() -> None:
    plane = _plane()
    async with connect(plane, tasks=False) as client:
        direct = await client.call("render", {"scene": "dock"})
    assert isinstance(direct, CallToolResult)
    assert direct.content[0].text == "dock: rendered"  # pyright: ignore[reportAttributeAccessIssue]


def test_the_keyword_table_names_every_task_mode() -> None:
    table = DOC.split("| keyword | meaning |", 1)[1].split("\n\n", 1)[0]
    for mode in ("task=True", '"optional"', 'task="required"', "task=False", '"forbidden"', "task_after"):
        assert mode in table
    assert re.search(r"-32021", table)

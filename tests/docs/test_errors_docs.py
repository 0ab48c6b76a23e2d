"""docs/errors.md, checked: the documented error result is what mcplane sends, and the Python
snippet reads a typed tool's failure from a real server through the official SDK client."""

from __future__ import annotations

import json
import re
import sys
import textwrap
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from tests.conftest import QUICKSTART, REPO_ROOT

from mcplane.errors import NotFound
from mcplane.middleware.errors import error_result

DOC = (REPO_ROOT / "docs" / "errors.md").read_text(encoding="utf-8")


def test_the_documented_error_result_is_the_one_sent() -> None:
    documented = json.loads(DOC.split("<!-- error-result -->\n```json\n", 1)[1].split("```", 1)[0])
    sent = error_result(NotFound("no user 'nobody'"), "5f1c0a9e2b7d4c31").model_dump(
        by_alias=True, exclude_none=True, mode="json"
    )
    sent.pop("resultType")  # the 2026-07-28 envelope field, stamped on every result
    assert sent == documented
    assert "structuredContent" not in sent


async def test_the_python_snippet_reads_a_typed_tools_failure() -> None:
    (snippet,) = re.findall(r"```python\n(.*?)```", DOC, flags=re.S)
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcplane.cli", "run", str(QUICKSTART)])
    async with Client(params) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert tools["fetch_user"].output_schema is not None  # a typed tool: its schema governs structuredContent
        namespace: dict[str, Any] = {"client": client}
        body = textwrap.indent(snippet, "    ")
        exec(compile(f"async def _snippet():\n{body}\n    return locals()\n", "errors.md", "exec"), namespace)
        with anyio.fail_after(30):
            found: dict[str, Any] = await namespace["_snippet"]()
    assert found["error"]["code"] == "not_found"
    assert found["error"]["retryable"] is False
    assert re.fullmatch(r"[0-9a-f]{16}", found["error"]["correlation_id"])
    assert found["result"].structured_content is None

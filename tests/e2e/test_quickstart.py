"""The README's quickstart server, run the way the README runs it, answers the official client."""

from __future__ import annotations

import sys

from mcp import Client, StdioServerParameters

from tests.conftest import QUICKSTART, REPO_ROOT, error_of


def _params() -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable, args=["-m", "mcplane.cli", "run", str(QUICKSTART)], cwd=str(REPO_ROOT)
    )


async def test_quickstart_over_stdio() -> None:
    progress: list[tuple[float, float | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total))

    async with Client(_params()) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) == {"fetch_user", "add"}
        assert set(tools["fetch_user"].input_schema["properties"]) == {"user_id"}
        assert tools["fetch_user"].annotations is not None
        assert tools["fetch_user"].annotations.read_only_hint is True

        user = await client.call_tool("fetch_user", {"user_id": "u1"}, progress_callback=on_progress)
        assert user.structured_content == {"id": "u1", "name": "Ada", "plan": "pro"}
        assert progress == [(1, 1)]

        missing = await client.call_tool("fetch_user", {"user_id": "nobody"})
        assert missing.is_error is True
        assert error_of(missing)["code"] == "not_found"
        assert error_of(missing)["message"] == "no user 'nobody'"

        assert (await client.call_tool("add", {"a": 2, "b": 3})).structured_content == {"result": 5}
        profile = await client.read_resource("users://u2")
        assert [getattr(c, "text", None) for c in profile.contents] == ["profile of u2"]
        prompt = await client.get_prompt("summarize", {"topic": "billing"})
        assert getattr(prompt.messages[0].content, "text", None) == (
            "Summarize what we know about billing in three sentences."
        )

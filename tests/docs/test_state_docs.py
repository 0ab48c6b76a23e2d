"""docs/state.md's snippets, run as written: the tools, the client calls, the config and the error."""

from __future__ import annotations

import inspect
import json
import re
import runpy
import textwrap
from pathlib import Path
from typing import Any

from mcp import Client
from mcp_types import RequestParamsMeta
from tests.conftest import error_of

from mcplane.backends.state import State
from mcplane.config import load_config

ROOT = Path(__file__).resolve().parents[2]
GUIDE = (ROOT / "docs" / "state.md").read_text(encoding="utf-8")


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", GUIDE, flags=re.S)


def _error(result: Any) -> dict[str, Any]:
    assert result.is_error
    error = dict(error_of(result))
    error.pop("correlation_id")
    return error


async def test_the_shop_tools_keep_state_per_conversation(tmp_path: Path) -> None:
    path = tmp_path / "shop.py"
    path.write_text(_blocks("python")[0])
    plane = runpy.run_path(str(path))["plane"]
    one: RequestParamsMeta = {"mcplane/conversation": "c-1"}
    two: RequestParamsMeta = {"mcplane/conversation": "c-2"}
    async with Client(plane.sdk) as client:
        await client.call_tool("add_item", {"item": "book"}, meta=one)
        cart = await client.call_tool("add_item", {"item": "pen"}, meta=one)
        assert cart.structured_content == {"result": ["book", "pen"]}
        first = await client.call_tool("checkout", {}, meta=one)
        again = await client.call_tool("checkout", {}, meta=one)
        empty = await client.call_tool("checkout", {}, meta=two)
    assert first.structured_content == {"items": ["book", "pen"], "new_order": True, "attempt": 1}
    assert again.structured_content == {"items": ["book", "pen"], "new_order": False, "attempt": 2}
    assert _error(empty)["message"] == "add_item must run first in this conversation"


async def test_the_client_snippet_and_the_error_shown_are_the_loan_example() -> None:
    plane = runpy.run_path(str(ROOT / "examples" / "loan" / "server.py"))["plane"]
    snippet = _blocks("python")[1]
    namespace: dict[str, Any] = {}
    exec("async def steps(client):\n" + textwrap.indent(snippet, "    ") + "\n    return user, credit", namespace)
    async with Client(plane.sdk) as client:
        user, credit = await namespace["steps"](client)
        skipped = await client.call_tool("decide", {"amount": 1}, meta={"mcplane/conversation": "another"})
    assert user.structured_content == {"id": "u1", "name": "Ada"}
    assert credit.structured_content == {"score": 780, "good": True}
    assert _error(skipped) == json.loads(_blocks("json")[0])


def test_the_config_snippet_and_the_example_s_config_load(tmp_path: Path) -> None:
    snippet = tmp_path / "mcplane.yaml"
    snippet.write_text(_blocks("yaml")[0])
    for path in (snippet, ROOT / "examples" / "loan" / "mcplane.yaml"):
        loaded = load_config(path, environ={"REDIS_URL": "redis+sentinel://s1:26379/mymaster/0"})
        assert loaded.state.backend == "redis"
        assert (loaded.state.ttl, loaded.state.max_value_bytes) == (3600.0, 16384)


def test_the_api_table_lists_the_handle_s_methods() -> None:
    table = GUIDE.split("## The API", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `await ctx\.state\.(\w+)\((.*?)\)` \|", table, flags=re.M)
    public = {name for name, _ in inspect.getmembers(State, inspect.iscoroutinefunction) if not name.startswith("_")}
    assert {name for name, _ in documented} == public
    for name, params in documented:
        names = [param.split("=")[0].strip() for param in params.split(",") if param.strip() != "*"]
        assert names == list(inspect.signature(getattr(State, name)).parameters)[1:], name


def test_the_commands_run_the_example_with_its_config() -> None:
    for line in _blocks("bash")[0].strip().splitlines():
        assert "mcplane run examples/loan/server.py" in line
        assert "--config examples/loan/mcplane.yaml" in line
    assert (ROOT / "examples" / "loan" / "server.py").is_file()

"""Long lists are paginated (``limits.list_page_size``): every entry is reached by following
``nextCursor``, each page is bounded, and a bad cursor is ``-32602``. Through a gateway in front
of an upstream that lists thousands of tools too."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from mcp import Client, MCPError

from mcplane import Plane
from mcplane.config import PlaneConfig
from mcplane.gateway import Gateway
from tests.conftest import ServerProcess, start_server

MANY = 1_200


def _plane(page_size: int | None = None) -> Plane:
    limits = {} if page_size is None else {"limits": {"list_page_size": page_size}}
    plane = Plane("catalog", config=PlaneConfig.model_validate(limits))
    for i in range(MANY):

        def tool(a: int, i: int = i) -> int:
            return a + i

        plane.tool(name=f"tool_{i:04d}", description="x" * 200)(tool)
    for i in range(30):
        plane.prompt(name=f"prompt_{i:02d}")(lambda: "hi")
    return plane


async def _all_tools(client: Client) -> tuple[list[str], list[int]]:
    names: list[str] = []
    sizes: list[int] = []
    cursor: str | None = None
    while True:
        page = await client.list_tools(cursor=cursor)
        names += [tool.name for tool in page.tools]
        sizes.append(len(page.tools))
        cursor = page.next_cursor
        if cursor is None:
            return names, sizes


async def test_a_long_list_comes_in_pages_that_reach_every_entry() -> None:
    async with Client(_plane().sdk, mode="2026-07-28") as client:
        names, sizes = await _all_tools(client)
        prompts = await client.list_prompts()
    assert sizes == [500, 500, 200]
    assert names == [f"tool_{i:04d}" for i in range(MANY)]
    assert prompts.next_cursor is None  # a short list is one page with no cursor
    assert len(prompts.prompts) == 30


async def test_the_page_size_is_configurable_and_a_bad_cursor_is_invalid_params() -> None:
    async with Client(_plane(page_size=100).sdk, mode="2026-07-28") as client:
        first = await client.list_tools()
        assert len(first.tools) == 100
        for bad in ("nonsense", first.next_cursor[:-2] + "!!" if first.next_cursor else "", "cHJvbXB0OjEwMA"):
            with pytest.raises(MCPError) as refused:
                await client.list_tools(cursor=bad)
            assert refused.value.error.code == -32602


@pytest.fixture(scope="module")
def catalog_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    app = tmp_path_factory.mktemp("catalog") / "catalog_app.py"
    app.write_text(
        "from tests.test_pagination import _plane\n\nplane = _plane()\n",
        encoding="utf-8",
    )
    server = start_server(app, tmp_path=app.parent)
    yield server
    server.stop()


async def test_a_gateway_collects_every_page_and_serves_its_own(catalog_server: ServerProcess) -> None:
    gateway = Gateway.from_config({"upstreams": {"up": {"endpoints": [{"url": catalog_server.url}]}}})
    async with Client(gateway.sdk, mode="2026-07-28") as client:
        names, sizes = await _all_tools(client)
    assert len(names) == MANY
    assert max(sizes) == 500
    assert names[0] == "up__tool_0000"

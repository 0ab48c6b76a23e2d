"""Lifespan dependencies: the factory shapes, opening and closing order, and injection into tools."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from mcplane.dependencies import Dependency, Inject, Injected, bind_injections, open_dependencies
from mcplane.errors import ConfigError


class Pool:
    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False


async def test_async_generator_factory_is_opened_and_closed() -> None:
    events: list[str] = []

    async def pool() -> AsyncIterator[Pool]:
        events.append("open")
        made = Pool("async-gen")
        yield made
        made.closed = True
        events.append("close")

    async with Dependency("pool", pool).open() as value:
        assert value.name == "async-gen"
        assert events == ["open"]
    assert value.closed
    assert events == ["open", "close"]


async def test_sync_generator_factory_is_opened_and_closed() -> None:
    events: list[str] = []

    def pool() -> Iterator[Pool]:
        events.append("open")
        yield Pool("sync-gen")
        events.append("close")

    async with Dependency("pool", pool).open() as value:
        assert value.name == "sync-gen"
    assert events == ["open", "close"]


async def test_async_context_manager_factory_is_entered_and_exited() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def client() -> AsyncIterator[str]:
        events.append("enter")
        yield "client"
        events.append("exit")

    async with Dependency("client", client).open() as value:
        assert value == "client"
    assert events == ["enter", "exit"]


async def test_plain_and_async_functions_give_constants() -> None:
    async def settings() -> dict[str, int]:
        return {"retries": 3}

    async with Dependency("retries", lambda: 3).open() as value:
        assert value == 3
    async with Dependency("settings", settings).open() as value:
        assert value == {"retries": 3}


async def test_open_dependencies_opens_in_order_and_closes_in_reverse() -> None:
    events: list[str] = []

    def factory(name: str) -> Any:
        async def dep() -> AsyncIterator[str]:
            events.append(f"open {name}")
            yield name
            events.append(f"close {name}")

        return dep

    deps = {name: Dependency(name, factory(name)) for name in ("db", "cache", "http")}
    async with open_dependencies(deps) as opened:
        assert opened == {"db": "db", "cache": "cache", "http": "http"}
    assert events == ["open db", "open cache", "open http", "close http", "close cache", "close db"]


async def test_a_failing_dependency_closes_those_already_open() -> None:
    events: list[str] = []

    async def db() -> AsyncIterator[str]:
        events.append("open db")
        try:
            yield "db"
        finally:
            events.append("close db")

    async def broken() -> AsyncIterator[str]:
        raise RuntimeError("cannot connect")
        yield "never"

    deps = {"db": Dependency("db", db), "broken": Dependency("broken", broken)}
    with pytest.raises(RuntimeError, match="cannot connect"):
        async with open_dependencies(deps):
            pytest.fail("the block must not run")
    assert events == ["open db", "close db"]


def test_inject_accepts_a_dependency_or_a_registered_function() -> None:
    def db() -> str:
        return "db"

    dep = Dependency("db", db)
    assert Inject(dep) == Injected(dep)
    db.__mcplane_dependency__ = dep  # type: ignore[attr-defined]  # what @plane.dependency does
    assert Inject(db) == Injected(dep)


def test_inject_refuses_an_unregistered_function() -> None:
    def not_registered() -> None: ...

    with pytest.raises(ConfigError, match=r"'not_registered' is not a registered @plane\.dependency"):
        Inject(not_registered)


def test_function_without_injections_is_returned_unchanged() -> None:
    def tool(a: int) -> int:
        return a

    assert bind_injections(tool, lambda name: None) is tool


def test_injection_leaves_unresolvable_annotations_alone_when_nothing_is_injected() -> None:
    def tool(a: DefinedNowhere) -> None:  # type: ignore[name-defined]  # noqa: F821
        return None

    assert bind_injections(tool, lambda name: None) is tool


async def test_injected_parameters_are_hidden_and_filled_at_call_time() -> None:
    dep = Dependency("pool", lambda: None)
    opened = {"pool": Pool("live")}

    async def fetch(user_id: str, pool: Pool = Inject(dep)) -> str:
        return f"{user_id} via {pool.name}"

    bound = bind_injections(fetch, opened.__getitem__)
    assert list(inspect.signature(bound).parameters) == ["user_id"]
    assert "pool" not in bound.__annotations__
    assert bound.__annotations__["user_id"] is str
    assert inspect.iscoroutinefunction(bound)
    assert await bound(user_id="u1") == "u1 via live"
    opened["pool"] = Pool("replaced")
    assert await bound(user_id="u2") == "u2 via replaced", "resolved per call, not at bind time"


def test_sync_tools_get_a_sync_wrapper() -> None:
    dep = Dependency("pool", lambda: None)

    def count(pool: Pool = Inject(dep)) -> str:
        return pool.name

    bound = bind_injections(count, {"pool": Pool("sync")}.__getitem__)
    assert not inspect.iscoroutinefunction(bound)
    assert bound() == "sync"
    assert bound.__name__ == "count"


def test_resolution_errors_surface_at_call_time() -> None:
    dep = Dependency("pool", lambda: None)

    def count(pool: Pool = Inject(dep)) -> str:
        return pool.name

    def resolve(name: str) -> Any:
        raise LookupError(f"dependency {name!r} is not open")

    bound = bind_injections(count, resolve)
    with pytest.raises(LookupError, match="'pool' is not open"):
        bound()

"""``ctx.state``: JSON values per conversation and principal, bound lazily, through a real plane."""

from __future__ import annotations

import math
from typing import Any

import pytest
from mcp import Client
from mcp_types import RequestParamsMeta

from mcplane import Plane
from mcplane.backends.state import (
    CONVERSATION_META_KEY,
    UPDATE_ATTEMPTS,
    MemoryStateStore,
    State,
    StateSpace,
    bind_state,
)
from mcplane.config import PlaneConfig
from mcplane.context import Context, Principal
from mcplane.errors import DependencyUnavailable, InvalidArguments
from tests.conftest import error_of


def _ctx(conversation: str | None = None, *, subject: str = "alice", tenant: str | None = None, **kw: Any) -> Context:
    meta = {CONVERSATION_META_KEY: conversation} if conversation is not None else {}
    return Context(principal=Principal(subject, tenant=tenant), meta=meta, **kw)


@pytest.fixture
def space() -> StateSpace:
    return StateSpace(MemoryStateStore(), ttl=60, max_value_bytes=1024)


# ---------------------------------------------------------------------------------------------- scope
async def test_a_conversation_keeps_its_values_and_others_do_not_see_them(space: StateSpace) -> None:
    first = bind_state(_ctx("conv-1"), space)
    await first.set("step", {"done": ["fetch"]})
    assert await bind_state(_ctx("conv-1"), space).get("step") == {"done": ["fetch"]}
    assert await bind_state(_ctx("conv-2"), space).get("step") is None


async def test_another_principal_guessing_the_conversation_id_sees_nothing(space: StateSpace) -> None:
    await bind_state(_ctx("conv-1", subject="alice"), space).set("secret", "alice's")
    assert await bind_state(_ctx("conv-1", subject="mallory"), space).get("secret") is None
    assert await bind_state(_ctx("conv-1", subject="alice", tenant="other"), space).get("secret") is None
    assert await bind_state(_ctx("conv-1", subject="alice"), space).get("secret") == "alice's"


async def test_a_session_is_the_scope_when_there_is_no_conversation_id(space: StateSpace) -> None:
    await bind_state(_ctx(session_id="sess-1"), space).set("k", 1)
    assert await bind_state(_ctx(session_id="sess-1"), space).get("k") == 1
    assert await bind_state(_ctx(session_id="sess-2"), space).get("k") is None
    # an explicit conversation id wins over the session: a client that reconnects keeps its conversation
    assert await bind_state(_ctx("c", session_id="sess-1"), space).get("k") is None


async def test_no_conversation_and_no_session_is_invalid_arguments_on_use(space: StateSpace) -> None:
    state = bind_state(_ctx(), space)  # binding never fails
    assert state.scoped is False
    with pytest.raises(InvalidArguments, match=r"send a conversation id in _meta\['mcplane/conversation'\]"):
        await state.get("k")


@pytest.mark.parametrize("bad", ["", "x" * 257, "tab\there", 42])
def test_a_malformed_conversation_id_is_refused(space: StateSpace, bad: Any) -> None:
    with pytest.raises(InvalidArguments, match="printable string"):
        bind_state(Context(meta={CONVERSATION_META_KEY: bad}), space)


# ---------------------------------------------------------------------------------------------- values
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({1, 2}, "holds a set"),
        (b"bytes", "holds a bytes"),
        (math.nan, "NaN or infinite"),
        ({"x": [math.inf]}, "NaN or infinite"),
        ({1: "int key"}, "key that is not a string"),
        (object(), "holds a object"),
        ("x" * 2000, "more than the 1024 allowed"),
    ],
)
async def test_only_json_is_stored(space: StateSpace, value: Any, message: str) -> None:
    state = bind_state(_ctx("c"), space)
    with pytest.raises(InvalidArguments, match=message):
        await state.set("k", value)
    assert await state.get("k") is None


async def test_deep_nesting_is_refused_not_a_crash(space: StateSpace) -> None:
    value: Any = []
    for _ in range(200):
        value = [value]
    with pytest.raises(InvalidArguments, match="nested more than"):
        await bind_state(_ctx("c"), space).set("k", value)


async def test_json_values_round_trip(space: StateSpace) -> None:
    state = bind_state(_ctx("c"), space)
    value = {"s": "é", "n": None, "b": True, "i": -3, "f": 1.5, "l": [1, "two", {"three": 3}], "t": (1, 2)}
    await state.set("k", value)
    assert await state.get("k") == {**value, "t": [1, 2]}
    assert await state.get("absent", default=[]) == []


async def test_keys_and_ttls_are_checked(space: StateSpace) -> None:
    state = bind_state(_ctx("c"), space)
    for key in ("", "k" * 257):
        with pytest.raises(InvalidArguments, match="state key"):
            await state.get(key)
    with pytest.raises(InvalidArguments, match="TTL must be positive"):
        await state.set("k", 1, ttl=0)
    with pytest.raises(InvalidArguments, match="must be an int"):
        await state.incr("k", True)


async def test_set_if_absent_incr_delete_and_update(space: StateSpace) -> None:
    state = bind_state(_ctx("c"), space)
    assert await state.set("decision", "approved", if_absent=True) is True
    assert await state.set("decision", "denied", if_absent=True) is False
    assert await state.get("decision") == "approved"
    assert await state.incr("n") == 1
    assert await state.incr("n", 4) == 5
    assert await state.update("cart", lambda cart: [*cart, "book"], default=[]) == ["book"]
    assert await state.update("cart", lambda cart: [*cart, "pen"]) == ["book", "pen"]
    assert await state.update("cart", lambda _: None) is None  # None deletes
    assert await state.get("cart") is None
    assert await state.delete("decision") is True
    assert await state.delete("decision") is False


async def test_an_update_that_never_wins_gives_up_with_a_retryable_error() -> None:
    class AlwaysLoses(MemoryStateStore):
        attempts = 0

        async def compare_and_set(self, key: str, expected: bytes | None, value: bytes | None, ttl: float) -> bool:
            self.attempts += 1
            return False

    store = AlwaysLoses()
    state = State(StateSpace(store), "{t}")
    with pytest.raises(DependencyUnavailable, match="too contended") as info:
        await state.update("k", lambda v: (v or 0) + 1)
    assert info.value.retryable
    assert store.attempts == UPDATE_ATTEMPTS


# ---------------------------------------------------------------------------------------------- ctx.state
def test_ctx_state_is_bound_once_and_only_when_asked() -> None:
    ctx = _ctx("c")
    assert "_state" not in ctx.__dict__  # a call that never touches state pays nothing
    with pytest.raises(LookupError, match="needs a running plane"):
        _ = ctx.state
    ctx = ctx.replace(state=State(StateSpace(MemoryStateStore()), "{t}"))
    assert ctx.state is ctx.state


def _stateful_plane(config: PlaneConfig | None = None) -> Plane:
    plane = Plane("stateful", config=config)

    @plane.tool()
    async def remember(value: str, ctx: Context) -> list[str]:
        return await ctx.state.update("seen", lambda seen: [*seen, value], default=[])

    @plane.tool()
    async def bad_value(ctx: Context) -> str:
        await ctx.state.set("k", {"when": object()})
        return "unreachable"

    return plane


async def test_tools_keep_state_per_conversation_through_a_plane() -> None:
    plane = _stateful_plane(PlaneConfig.model_validate({"state": {"ttl": "10m", "max_value_bytes": 4096}}))
    async with Client(plane.sdk) as client:
        one: RequestParamsMeta = {CONVERSATION_META_KEY: "conv-a"}
        two: RequestParamsMeta = {CONVERSATION_META_KEY: "conv-b"}
        assert (await client.call_tool("remember", {"value": "x"}, meta=one)).structured_content == {"result": ["x"]}
        second = await client.call_tool("remember", {"value": "y"}, meta=one)
        assert second.structured_content == {"result": ["x", "y"]}
        other = await client.call_tool("remember", {"value": "z"}, meta=two)
        assert other.structured_content == {"result": ["z"]}
        missing = await client.call_tool("remember", {"value": "q"})
        bad = await client.call_tool("bad_value", {}, meta=one)
        assert plane.layers.state is not None
        assert (plane.layers.state.ttl, plane.layers.state.max_value_bytes) == (600, 4096)
    assert missing.is_error
    assert error_of(missing)["code"] == "invalid_arguments"
    assert bad.is_error
    assert error_of(bad)["code"] == "invalid_arguments"
    assert "not JSON" in error_of(bad)["message"]


def test_the_state_section() -> None:
    config = PlaneConfig.model_validate({"state": {"ttl": "2h"}})
    assert (config.state.backend, config.state.ttl, config.state.max_value_bytes) == ("memory", 7200.0, 65536)
    with pytest.raises(ValueError, match=r"state\.backend is redis but redis_url is not set"):
        PlaneConfig.model_validate({"state": {"backend": "redis"}})

"""The gateway hop's per-call bookkeeping: what each forwarded call leaves behind, and what it costs.

* an endpoint's callers in flight are kept by identity: two callers' contexts compare equal as
  pydantic models, and the one that ends must take out its own, not the first equal one;
* a raw pool connection keeps one read timer for all its waits (on a fake clock: made once over
  five exchanges, a later wait still gets its whole period, an early tick re-arms, a closed
  connection drops it);
* the lean lane keeps a request head per session and stamp: byte for byte the head built afresh
  (Hypothesis: odd names, cases and values, CR/LF and non-Latin-1 refused alike), no header dict
  built for a call like an earlier one, bounded.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import anyio
import anyio.lowlevel
import httpx2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcplane import Plane
from mcplane.gateway import pool
from mcplane.gateway.config import UpstreamConfig
from mcplane.gateway.pool import READ_TIMEOUT, _Connection  # pyright: ignore[reportPrivateUsage]
from mcplane.gateway.upstream import Upstream, _forget  # pyright: ignore[reportPrivateUsage]

WAIT = 10.0


def _upstream() -> Upstream:
    upstream = Upstream("up", UpstreamConfig.model_validate({"endpoints": [{"url": "http://127.0.0.1:9/mcp"}]}))
    (endpoint,) = upstream.endpoints
    endpoint.sdk = SimpleNamespace(protocol_version="2025-11-25")  # pyright: ignore[reportAttributeAccessIssue]
    return upstream


def test_two_callers_contexts_compare_equal() -> None:
    """Why identity: the premise (if pydantic ever compares mcplane's slots, the test still holds)."""
    plane = Plane("t")
    first, second = plane.make_context(None, None), plane.make_context(None, None)
    assert first is not second
    assert first == second


async def test_the_caller_that_ends_first_leaves_the_other_in_flight() -> None:
    upstream = _upstream()
    (endpoint,) = upstream.endpoints
    plane = Plane("t")
    first, second = plane.make_context(None, None), plane.make_context(None, None)
    started = {id(first): anyio.Event(), id(second): anyio.Event()}
    finish = {id(first): anyio.Event(), id(second): anyio.Event()}
    ended = {id(first): anyio.Event(), id(second): anyio.Event()}

    def sender(ctx: Any) -> Any:
        async def send(link: Any, meta: dict[str, Any]) -> Any:
            started[id(ctx)].set()
            await finish[id(ctx)].wait()
            return {"ok": True}

        return send

    async def call(ctx: Any) -> None:
        await upstream.request(sender(ctx), ctx, retry=False, what="tools/call 'x'")
        ended[id(ctx)].set()

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            for ctx in (first, second):
                tg.start_soon(call, ctx)
                await started[id(ctx)].wait()
            assert [id(c) for c in endpoint.callers] == [id(first), id(second)]
            finish[id(second)].set()  # the later one ends first
            await ended[id(second)].wait()
            assert endpoint.callers[0] is first  # list.remove would have left ``second``
            assert endpoint._caller() is first  # pyright: ignore[reportPrivateUsage]
            finish[id(first)].set()
    assert endpoint.callers == []
    assert endpoint.in_flight == 0


def test_forget_takes_out_only_the_context_itself() -> None:
    plane = Plane("t")
    contexts = [plane.make_context(None, None) for _ in range(4)]
    for gone in ([3], [0], [2, 1], [1, 3, 0, 2]):
        callers = list(contexts)
        for index in gone:
            _forget(callers, contexts[index])
        assert [id(c) for c in callers] == [id(c) for i, c in enumerate(contexts) if i not in gone]
    callers = list(contexts[:2])
    _forget(callers, plane.make_context(None, None))  # an equal context not in the list: nothing goes
    assert [id(c) for c in callers] == [id(c) for c in contexts[:2]]


# ----------------------------------------------------------------- the raw pool's read timer
class _Clock:
    """A loop stand-in for a :class:`~mcplane.gateway.pool._Connection`: its own clock, its timers
    recorded (fired by the test), futures from the running loop."""

    def __init__(self) -> None:
        self.now = 0.0
        self.armed: list[tuple[float, Any, _Handle]] = []
        self.made = 0

    def time(self) -> float:
        return self.now

    def create_future(self) -> Any:
        return asyncio.get_running_loop().create_future()

    def call_at(self, when: float, callback: Any) -> _Handle:
        self.made += 1
        handle = _Handle()
        self.armed.append((when, callback, handle))
        return handle

    def fire(self, now: float) -> None:
        """Move the clock to ``now`` and run the timers due by then (as the loop would)."""
        self.now = now
        due = [entry for entry in self.armed if entry[0] <= now and not entry[2].cancelled]
        self.armed = [entry for entry in self.armed if entry not in due and not entry[2].cancelled]
        for _, callback, _ in due:
            callback()

    def pending(self) -> list[float]:
        return [when for when, _, handle in self.armed if not handle.cancelled]


class _Handle:
    cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def abort(self) -> None:
        pass


def _connection(clock: _Clock) -> Any:
    conn = _Connection(clock)  # pyright: ignore[reportArgumentType]
    conn.transport = _Transport()  # pyright: ignore[reportAttributeAccessIssue]
    return conn


_ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


def _answering(conn: Any) -> Any:
    """What feeds ``conn`` a whole answer, one checkpoint after its request went out."""

    async def answer() -> None:
        await anyio.lowlevel.checkpoint()
        conn.data_received(_ANSWER)

    return answer


async def _head_while(conn: Any, driver: Any, expected: type[BaseException]) -> list[BaseException]:
    """Await ``conn``'s answer head while ``driver()`` runs beside it: the ``expected`` errors it raised."""
    raised: list[BaseException] = []
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(driver)
            try:
                await conn.head()
            except expected as exc:
                raised.append(exc)
    return raised


async def _exchange(conn: Any, answer: Any) -> bytes:
    """One request on ``conn``: its head awaited while ``answer()`` feeds the response; the body."""
    conn.send(b"POST / HTTP/1.1\r\n\r\n")
    async with anyio.create_task_group() as tg:
        tg.start_soon(answer)
        await conn.head()
    return await conn.read()


async def test_one_read_timer_serves_every_wait_of_a_connection() -> None:
    clock = _Clock()
    conn = _connection(clock)
    for second in range(5):
        clock.now = float(second)
        with anyio.fail_after(WAIT):
            assert await _exchange(conn, _answering(conn)) == b"{}"
    assert clock.made == 1  # armed by the first wait, kept (a timer per wait made five)
    assert clock.pending() == [READ_TIMEOUT]
    clock.fire(READ_TIMEOUT)  # fires with no wait in progress: nothing happens, nothing is re-armed
    assert conn.error is None
    assert clock.pending() == []


async def test_a_wait_times_out_its_full_period_after_it_began_though_the_timer_was_armed_earlier() -> None:
    clock = _Clock()
    conn = _connection(clock)
    with anyio.fail_after(WAIT):
        await _exchange(conn, _answering(conn))  # at 0: the timer is armed for READ_TIMEOUT
    clock.now = 100.0

    async def slow() -> None:
        await anyio.lowlevel.checkpoint()
        clock.fire(READ_TIMEOUT)  # the first wait's deadline: this wait has 100 s left, re-armed for them
        assert conn.error is None
        assert clock.pending() == [100.0 + READ_TIMEOUT]
        clock.fire(100.0 + READ_TIMEOUT - 0.001)  # not yet
        assert conn.error is None
        clock.fire(100.0 + READ_TIMEOUT)

    conn.send(b"POST / HTTP/1.1\r\n\r\n")
    outcome = await _head_while(conn, slow, httpx2.ReadTimeout)
    assert len(outcome) == 1
    assert str(outcome[0]) == "timed out waiting for the upstream's response"


async def test_an_early_tick_of_the_timer_sets_it_again_for_the_deadline() -> None:
    clock = _Clock()
    conn = _connection(clock)
    conn.send(b"POST / HTTP/1.1\r\n\r\n")

    async def ticks() -> None:
        await anyio.lowlevel.checkpoint()
        (when, callback, _), *_ = clock.armed
        assert when == READ_TIMEOUT
        clock.armed.clear()
        clock.now = READ_TIMEOUT - 0.0005  # a loop may run a timer up to its clock's resolution early
        callback()
        assert conn.error is None
        assert clock.pending() == [READ_TIMEOUT]
        clock.fire(READ_TIMEOUT)

    assert len(await _head_while(conn, ticks, httpx2.ReadTimeout)) == 1


async def test_a_closed_connection_drops_its_read_timer() -> None:
    clock = _Clock()
    conn = _connection(clock)
    with anyio.fail_after(WAIT):
        await _exchange(conn, _answering(conn))
    assert clock.pending() != []
    conn.abort()
    assert clock.pending() == []
    assert conn.timer is None
    other = _connection(clock)
    other.send(b"POST / HTTP/1.1\r\n\r\n")

    async def lost() -> None:
        await anyio.lowlevel.checkpoint()
        other.data_received(b"HTTP/1.1 200 OK\r\n")
        other.connection_lost(None)

    await _head_while(other, lost, httpx2.RemoteProtocolError)  # closed mid-answer: what matters is the timer
    assert other.timer is None
    assert clock.pending() == []


# ----------------------------------------------------------------- the lean lane's kept request heads
_header_names = st.sampled_from(
    ["mcp-protocol-version", "mcp-method", "mcp-name", "accept", "Content-Type", "MCP-Name", "mcp-param-region", "x-a"]
)
_header_values = st.text(max_size=12) | st.sampled_from(["2026-07-28", "tools/call", "=?base64?w6k=?=", "é", "a\r\nb"])


def _lane_and_pool() -> tuple[Any, Any]:
    from mcplane.gateway.lean import LeanLane
    from mcplane.gateway.pool import Pool

    lane = LeanLane("http://127.0.0.1:9/mcp")
    lane._client_headers = {  # pyright: ignore[reportPrivateUsage]
        "user-agent": ("User-Agent", "ua/1"),
        "accept": ("Accept", "*/*"),
        "x-upstream-key": ("X-Upstream-Key", "k"),
    }
    return lane, Pool("http://127.0.0.1:9/mcp", None)


@settings(max_examples=300, deadline=None)
@given(
    calls=st.lists(
        st.tuples(
            st.dictionaries(_header_names, _header_values, max_size=5),
            st.booleans(),
            st.sampled_from([None, "s1", "s2"]),
            st.integers(min_value=0, max_value=1 << 24),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_a_kept_head_is_the_head_built_afresh(calls: list[tuple[dict[str, str], bool, str | None, int]]) -> None:
    """Byte for byte what the general path builds (the request's header dict merged with the
    client's, then the head), ``None`` alike (CR, LF, non-Latin-1), on first sight and when kept."""
    lane, pool = _lane_and_pool()
    for stamped, modern, session, length in [*calls, *calls]:
        lane.session_id = session
        general = lane._prefix_with(pool, lane._headers(modern, stamped), length)  # pyright: ignore[reportPrivateUsage]
        assert lane._kept_head(pool, modern, dict(stamped), length) == general  # pyright: ignore[reportPrivateUsage]


def test_a_call_like_an_earlier_one_builds_no_header_dict(monkeypatch: pytest.MonkeyPatch) -> None:
    from mcplane.gateway import lean

    lane, pool = _lane_and_pool()
    built: list[dict[str, str]] = []
    general = lean.LeanLane._headers  # pyright: ignore[reportPrivateUsage]

    def counted(self: Any, modern: bool, stamped: dict[str, str]) -> dict[str, str]:
        headers = general(self, modern, stamped)
        built.append(headers)
        return headers

    monkeypatch.setattr(lean.LeanLane, "_headers", counted)
    stamp = {"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "echo"}
    heads = {lane._kept_head(pool, True, dict(stamp), n) for n in (10, 10, 11, 12)}  # pyright: ignore[reportPrivateUsage]
    assert len(heads) == 3
    assert len(built) == 1
    lane._kept_head(pool, True, {**stamp, "mcp-name": "other"}, 10)  # pyright: ignore[reportPrivateUsage]
    assert len(built) == 2
    lane.session_id = "s9"  # a session matters to a 2025-11-25 call only
    lane._kept_head(pool, True, dict(stamp), 10)  # pyright: ignore[reportPrivateUsage]
    assert len(built) == 2
    lane._kept_head(pool, False, dict(stamp), 10)  # pyright: ignore[reportPrivateUsage]
    assert len(built) == 3


def test_kept_heads_are_bounded() -> None:
    from mcplane.gateway.lean import _MAX_HEADS  # pyright: ignore[reportPrivateUsage]

    lane, pool = _lane_and_pool()
    for index in range(_MAX_HEADS * 2 + 3):
        lane._kept_head(pool, True, {"mcp-name": f"t{index}"}, 1)  # pyright: ignore[reportPrivateUsage]
        assert len(lane._heads) <= _MAX_HEADS  # pyright: ignore[reportPrivateUsage]


async def test_a_lowered_read_timeout_rearms_the_timer_for_the_earlier_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = _Clock()
    conn = _connection(clock)
    quick = _answering(conn)
    with anyio.fail_after(WAIT):
        await _exchange(conn, quick)
    assert clock.pending() == [pool.READ_TIMEOUT]
    monkeypatch.setattr(pool, "READ_TIMEOUT", 5.0)
    clock.now = 10.0
    with anyio.fail_after(WAIT):
        await _exchange(conn, quick)
    assert clock.pending() == [15.0]  # never later than the wait's own deadline

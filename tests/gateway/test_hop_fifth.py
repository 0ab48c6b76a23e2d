"""The gateway hop's per-call bookkeeping: what each forwarded call leaves behind, and what it costs.

* an endpoint's callers in flight are kept by identity: two callers' contexts compare equal as
  pydantic models, and the one that ends must take out its own, not the first equal one;
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import anyio

from mcplane import Plane
from mcplane.gateway.config import UpstreamConfig
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

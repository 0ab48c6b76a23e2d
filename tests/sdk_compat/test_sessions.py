"""Session and idle bookkeeping: a 2025-11-25 call on the hot path holds its session as the SDK's
transport holds it (the idle countdown stops while any request runs and restarts when the last one
ends), and only a live session of the caller's takes the hot path."""

from __future__ import annotations

import math
from typing import Any

import anyio
import pytest

from mcplane import Plane
from mcplane.sdk_adapter.sessions import open_sessions
from tests.sdk_compat.wire import WAIT, HTTPPeer, answers_of, http_peer, tool_call


class Gate:
    """Tools that wait: ``started`` says a call is running, ``release`` lets them all finish."""

    def __init__(self) -> None:
        self.started = 0
        self.changed = anyio.Event()
        self.release = anyio.Event()


def gated_plane(gate: Gate) -> Plane:
    plane = Plane("sessions")

    @plane.tool()
    async def wait(label: str) -> str:
        gate.started += 1
        gate.changed.set()
        await gate.release.wait()
        return label

    @plane.tool()
    async def echo(text: str) -> str:
        return text

    return plane


async def started(gate: Gate, count: int) -> None:
    with anyio.fail_after(WAIT):
        while gate.started < count:
            gate.changed = anyio.Event()
            await gate.changed.wait()


def idle_deadline(peer: HTTPPeer) -> float:
    manager = peer.app._manager  # pyright: ignore[reportPrivateUsage]
    assert manager is not None
    assert peer.session is not None
    idle = open_sessions(manager)[peer.session].idle_scope
    assert idle is not None
    return idle.deadline


async def idle_clock_story(fast: bool) -> list[Any]:
    """What the idle clock does around two overlapping calls, and what they answer."""
    gate = Gate()
    story: list[Any] = []
    async with http_peer(gated_plane(gate), fast=fast, modern=False) as peer:
        story.append(("idle", math.isfinite(idle_deadline(peer))))
        answers: list[Any] = []

        async def call(label: str, request_id: int) -> None:
            answers.append((await peer.call(tool_call("wait", {"label": label}, request_id=request_id))).body)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "a", 1)
            tg.start_soon(call, "b", 2)
            await started(gate, 2)
            story.append(("two running", idle_deadline(peer)))
            gate.release.set()
        story.append(("both done", math.isfinite(idle_deadline(peer))))
        story.append(sorted(answers, key=lambda body: body["id"]))
        story.append(("served", peer.served()))
    return story


async def test_the_idle_clock_is_held_while_calls_run_as_the_sdk_holds_it() -> None:
    fast, sdk = await idle_clock_story(True), await idle_clock_story(False)
    assert fast[:-1] == sdk[:-1]
    assert fast[0] == ("idle", True)
    assert fast[1] == ("two running", math.inf)
    assert fast[2] == ("both done", True)
    assert (fast[-1], sdk[-1]) == (("served", 2), ("served", 0))


@pytest.mark.parametrize("session", ["unknown", "ended", "not-a-session"])
async def test_calls_outside_a_live_session_are_answered_as_the_sdk_answers_them(session: str) -> None:
    async def story(fast: bool) -> tuple[Any, int]:
        async with http_peer(gated_plane(Gate()), fast=fast, modern=False) as peer:
            if session == "ended":
                deleted = await peer.http.delete("/mcp", headers=peer.headers())
                assert deleted.status_code == 200
            elif session == "unknown":
                peer.session = peer.session[:-4] + "AAAA" if peer.session else None
            else:
                peer.session = "x"
            answer = await peer.call(tool_call("echo", {"text": "hi"}))
            return answer, peer.served()

    (fast, served), (sdk, _) = await story(True), await story(False)
    assert fast == sdk
    assert served == 0


async def test_a_session_call_takes_the_hot_path_only_after_the_handshake() -> None:
    compared = await answers_of(
        lambda: gated_plane(Gate()), "http-2025", [tool_call("echo", {"text": "a"}, request_id=i) for i in range(3)]
    )
    assert compared.fast == compared.sdk
    assert compared.served == 3

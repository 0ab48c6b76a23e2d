"""The per-call context: principal, correlation id, deadline and dependencies."""

from __future__ import annotations

import dataclasses
import time

import pytest

from mcplane.context import ANONYMOUS, Context, Principal


def test_anonymous_principal() -> None:
    assert ANONYMOUS.subject == "anonymous"
    assert ANONYMOUS.anonymous is True
    assert ANONYMOUS.roles == frozenset()
    assert ANONYMOUS.tenant is None


def test_a_named_principal_is_not_anonymous_and_is_immutable() -> None:
    alice = Principal("alice", roles=frozenset({"admin"}), scopes=frozenset({"billing:read"}), tenant="acme")
    assert alice.anonymous is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        alice.subject = "mallory"  # type: ignore[misc]


def test_defaults() -> None:
    ctx = Context()
    assert ctx.principal is ANONYMOUS
    assert ctx.correlation_id == ""
    assert ctx.deadline is None
    assert ctx.remaining() is None
    assert ctx.session_id is None


def test_remaining_counts_down_and_never_goes_negative() -> None:
    soon = Context(deadline=time.monotonic() + 30)
    remaining = soon.remaining()
    assert remaining is not None
    assert 29 < remaining <= 30
    assert Context(deadline=time.monotonic() - 5).remaining() == 0.0


def test_dependencies_by_name() -> None:
    pool = object()
    ctx = Context(principal=Principal("svc"), correlation_id="abc", dependencies={"pool": pool})
    assert ctx.dependency("pool") is pool
    assert ctx.principal.subject == "svc"
    assert ctx.correlation_id == "abc"
    with pytest.raises(LookupError, match="no dependency named 'cache' is open"):
        ctx.dependency("cache")


def test_a_context_cannot_be_assigned_from_outside() -> None:
    ctx = Context(principal=Principal("alice"), correlation_id="c1", deadline=10.0)
    with pytest.raises(AttributeError):
        ctx.principal = Principal("mallory")  # type: ignore[misc]
    for name in ("_principal", "_deadline", "_correlation_id", "_session_id", "_dependencies", "_state"):
        with pytest.raises(AttributeError, match="read-only"):
            setattr(ctx, name, None)
    assert ctx.principal.subject == "alice"
    assert ctx.deadline == 10.0


def test_replace_returns_a_new_context_and_leaves_the_rest() -> None:
    scope = {"type": "http", "headers": [(b"traceparent", b"00-abc-def-01")]}
    ctx = Context(
        principal=ANONYMOUS,
        correlation_id="c1",
        deadline=None,
        dependencies={"db": "conn"},
        scope=scope,
        meta={"k": "v"},
        session_id="s1",
    )
    alice = Principal("alice", tenant="acme")
    changed = ctx.replace(principal=alice)
    assert changed is not ctx
    assert changed.principal is alice
    assert ctx.principal is ANONYMOUS, "the original is untouched"
    assert (changed.correlation_id, changed.deadline, changed.scope, changed.session_id) == ("c1", None, scope, "s1")
    assert changed.request_meta == {"k": "v"}
    assert changed.dependency("db") == "conn"
    assert changed.headers == {"traceparent": "00-abc-def-01"}

    later = changed.replace(deadline=42.0)
    assert (later.deadline, changed.deadline, ctx.deadline) == (42.0, None, None)
    assert later.principal is alice
    assert later.replace(deadline=None).deadline is None, "a field can be replaced by None"


def test_replace_keeps_the_sdk_request_state_of_a_subclass() -> None:
    class Tagged(Context):
        """A context subclass with its own pydantic private attribute."""

        _tag: str = "none"

        def tag(self, value: str) -> None:
            self._tag = value

    ctx = Tagged(correlation_id="c1")
    ctx.tag("t1")
    changed = ctx.replace(correlation_id="c2")
    assert isinstance(changed, Tagged)
    assert changed._tag == "t1"  # pyright: ignore[reportPrivateUsage]
    changed.tag("t2")
    assert ctx._tag == "t1", "the copies do not share their private state"  # pyright: ignore[reportPrivateUsage]


def test_correlation_ids_are_16_hex_digits_and_unique_across_batches() -> None:
    import re

    from mcplane.context import new_correlation_id

    ids = [new_correlation_id() for _ in range(2000)]  # several batches of 256
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_correlation_ids_come_from_one_urandom_draw_per_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from mcplane import context as context_module

    draws: list[int] = []
    real = os.urandom

    def counting(size: int) -> bytes:
        draws.append(size)
        return real(size)

    monkeypatch.setattr(context_module.os, "urandom", counting)
    context_module._correlation_ids.clear()  # pyright: ignore[reportPrivateUsage]
    for _ in range(300):
        context_module.new_correlation_id()
    assert draws == [8 * 256, 8 * 256]

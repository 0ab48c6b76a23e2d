"""The request facts of a record come from the scope's raw headers exactly as ``context.headers`` has them."""

from __future__ import annotations

import os
import re
import sys
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcplane import Context, Principal
from mcplane.audit.entry import _scope_headers, bounded_text, call_base, call_entry, new_call_id, request_facts
from mcplane.audit.forwarded import TrustedProxies
from mcplane.pipeline import Call

TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _context(*headers: tuple[bytes, bytes]) -> Context:
    scope: dict[str, Any] = {"type": "http", "client": ("10.0.0.7", 5000), "headers": list(headers)}
    return Context(scope=scope)


def test_facts_from_the_scope_headers() -> None:
    context = _context((b"user-agent", b"agent/1"), (b"traceparent", TRACE.encode()), (b"x-forwarded-for", b"1.2.3.4"))
    facts = request_facts(context)
    assert (facts.client_ip, facts.user_agent, facts.trace_id) == ("10.0.0.7", "agent/1", TRACE[3:35])
    assert request_facts(context, TrustedProxies(["10.0.0.0/8"])).client_ip == "1.2.3.4"
    assert request_facts(context, TrustedProxies(["192.168.0.0/16"])).client_ip == "10.0.0.7"


def test_every_copy_of_x_forwarded_for_counts_in_order() -> None:
    context = _context((b"X-Forwarded-For", b"6.6.6.6, 1.2.3.4"), (b"x-forwarded-for", b"10.0.0.2"))
    assert request_facts(context, TrustedProxies(["10.0.0.0/8"])).client_ip == "1.2.3.4"


def test_the_lower_case_name_and_the_last_copy_win_as_in_context_headers() -> None:
    context = _context((b"User-Agent", b"odd"), (b"user-agent", b"first"), (b"user-agent", b"last"))
    assert request_facts(context).user_agent == "last" == (context.headers or {})["user-agent"]
    assert request_facts(_context((b"User-Agent", b"only"))).user_agent == "only"


def test_long_values_are_capped_and_missing_ones_empty() -> None:
    facts = request_facts(_context((b"user-agent", b"x" * 1000)))
    assert facts.user_agent == "x" * 256
    assert request_facts(_context((b"user-agent", b"a\x00b"))).user_agent == "a\\u0000b"
    assert (facts.trace_id, facts.session_id) == ("", "")


class _Text(str):
    __slots__ = ()


@pytest.mark.parametrize(
    "value",
    ["", "127.0.0.1", "x" * 256, "x" * 257, "nul\x00byte", "lone \ud800", "é" * 300, "ok ✓", _Text("sub\x00class")],
)
def test_bounded_text_is_cut_and_escaped_only_where_needed(value: str) -> None:
    expected = value[:256].encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\u0000")[:256]
    text = bounded_text(value)
    assert text == expected
    assert type(text) is str
    assert len(text) <= 256


def test_call_ids_are_random_version_4_uuids_in_32_hex_digits() -> None:
    ids = {new_call_id() for _ in range(2000)}
    assert len(ids) == 2000
    for call_id in ids:
        assert re.fullmatch(r"[0-9a-f]{32}", call_id)
        parsed = uuid.UUID(hex=call_id)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert parsed.hex == call_id
    # every bit outside the version and variant varies
    varying = 0
    for call_id in ids:
        varying |= int(call_id, 16) ^ int(next(iter(ids)), 16)
    assert varying == ((1 << 128) - 1) & ~(0xF000 << 64) & ~(0xC000 << 48)


@pytest.mark.skipif(sys.platform == "win32", reason="no fork")
def test_a_forked_child_does_not_reuse_the_call_ids_its_parent_made() -> None:
    new_call_id()  # the parent holds ids made in advance
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, new_call_id().encode())
        os._exit(0)
    os.close(write)
    try:
        child = os.read(read, 64).decode()
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    ours = {new_call_id() for _ in range(300)}
    assert re.fullmatch(r"[0-9a-f]{32}", child)
    assert child not in ours


def _scope_headers_by_lowering_each(scope: dict[str, Any]) -> tuple[dict[str, str], str]:
    """The one-pass header read as first written: every name lowered."""
    exact: dict[str, str] = {}
    loose: dict[str, str] = {}
    forwarded: list[str] = []
    for raw_name, raw_value in scope.get("headers", ()):
        if raw_name in (b"traceparent", b"user-agent"):
            exact[raw_name.decode("latin-1")] = raw_value.decode("latin-1")
            continue
        lowered = raw_name.lower()
        if lowered == b"x-forwarded-for":
            forwarded.append(raw_value.decode("latin-1"))
        elif lowered in (b"traceparent", b"user-agent"):
            loose[lowered.decode("latin-1")] = raw_value.decode("latin-1")
    return ({**loose, **exact} if loose else exact), ",".join(forwarded)


_NAMES = st.sampled_from(
    [
        b"user-agent",
        b"User-Agent",
        b"traceparent",
        b"TraceParent",
        b"x-forwarded-for",
        b"X-Forwarded-For",
        b"host",
        b"123",
    ]
) | st.binary(max_size=12)


@given(st.lists(st.tuples(_NAMES, st.binary(max_size=12)), max_size=8))
def test_scope_headers_read_as_by_lowering_each_name(headers: list[tuple[bytes, bytes]]) -> None:
    scope: dict[str, Any] = {"headers": headers}
    assert _scope_headers(scope) == _scope_headers_by_lowering_each(scope)


CONTEXTS = [
    _context(),
    _context((b"user-agent", b"agent/1"), (b"traceparent", TRACE.encode()), (b"x-forwarded-for", b"1.2.3.4")),
    _context((b"X-Forwarded-For", b"6.6.6.6, 1.2.3.4"), (b"x-forwarded-for", b"10.0.0.2"), (b"User-Agent", b"a\x00")),
    Context(principal=Principal("alice", tenant="acme"), correlation_id="c1", session_id="s" * 2000),
    Context(principal=Principal("\ud800" * 300), headers={"User-Agent": "x" * 300, "traceparent": TRACE}),
]


@pytest.mark.parametrize("proxies", [TrustedProxies(), TrustedProxies(["10.0.0.0/8"])])
@pytest.mark.parametrize("context", CONTEXTS)
def test_call_base_is_call_entry_of_the_request_facts(context: Context, proxies: TrustedProxies) -> None:
    call = Call("tool", "n" * 1100, {"a": [1, "\ud800"]}, context)
    expected = call_entry(call, "c" * 32, request_facts(context, proxies))
    base = call_base(call, "c" * 32, proxies)
    assert base == expected
    assert list(base) == list(expected)

"""Eligibility: the hot path takes exactly the requests it answers as the SDK would, and declines
the rest (they reach the SDK, so both paths answer alike either way)."""

from __future__ import annotations

import re
from typing import Annotated, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp.server.context import ServerRequestContext
from mcp_types import InputRequiredResult
from pydantic import Field

from mcplane import Context, Plane
from mcplane.sdk_adapter.eligibility import read_alike
from mcplane.sdk_adapter.otel import SDKOpenTelemetryMiddleware
from tests.sdk_compat.wire import ERAS, Era, answers_of, tool_call


def make_plane() -> Plane:
    plane = Plane("eligible")

    @plane.tool()
    async def echo(text: str) -> str:
        return text

    @plane.tool()
    async def with_ctx(ctx: Context) -> str:
        return ctx.principal.subject

    @plane.tool()
    async def asks(text: str) -> str | InputRequiredResult:
        return text

    @plane.tool()
    async def region(where: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})]) -> str:
        return where

    @plane.tool(task="optional")
    async def long_job(text: str) -> str:
        return text

    return plane


def _call(**changes: Any) -> dict[str, Any]:
    message = tool_call("echo", {"text": "hi"})
    for key, value in changes.items():
        if key == "meta":
            message["params"]["_meta"] = value
        elif key == "params":
            message["params"] = {**message["params"], **value}
        else:
            message[key] = value
    return message


SERVED = [
    ("plain", _call(), 1),
    ("string-id", _call(id="abc"), 1),
    ("no-arguments", tool_call("echo", None), 1),
    ("traceparent", _call(meta={"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}), 1),
]
DECLINED = [
    ("progress-token", _call(meta={"progressToken": "p1"})),
    ("log-level", _call(meta={"io.modelcontextprotocol/logLevel": "info"})),
    ("extra-param", _call(params={"task": {"ttl": 1000}})),
    ("unknown-meta", _call(meta={"vendor/thing": 1})),
    ("context-tool", tool_call("with_ctx", {})),
    ("input-required-tool", tool_call("asks", {"text": "x"})),
    ("header-mapped-tool", tool_call("region", {"where": "eu"})),
    ("task-tool", tool_call("long_job", {"text": "x"})),
    ("unknown-tool", tool_call("nope", {})),
    ("arguments-not-an-object", _call(params={"arguments": [1, 2]})),
    ("name-not-a-string", _call(params={"name": 5})),
    ("bool-id", _call(id=True)),
    ("float-id", _call(id=1.5)),
]


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize(("case", "message", "served"), SERVED, ids=[c for c, _, _ in SERVED])
async def test_plain_calls_take_the_hot_path_and_answer_alike(
    era: Era, case: str, message: dict[str, Any], served: int
) -> None:
    compared = await answers_of(make_plane, era, [message])
    assert compared.fast == compared.sdk
    assert compared.served == served


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize(("case", "message"), DECLINED, ids=[c for c, _ in DECLINED])
async def test_everything_else_is_left_to_the_sdk(era: Era, case: str, message: dict[str, Any]) -> None:
    compared = await answers_of(make_plane, era, [message])
    assert compared.fast == compared.sdk
    assert compared.served == 0


class Passing:
    """An SDK-level middleware that passes every message on (the SDK path must run it)."""

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: Any) -> Any:
        return await call_next(ctx)


class OpenTelemetryMiddleware(Passing):
    """Not the SDK's: a user's middleware that happens to share its class name."""


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize(
    ("middleware", "served"),
    [(None, 1), (SDKOpenTelemetryMiddleware, 1), (Passing, 0), (OpenTelemetryMiddleware, 0)],
    ids=["none", "the-sdks-otel", "a-users", "a-users-named-like-the-sdks"],
)
async def test_sdk_middleware_turns_the_hot_path_off_unless_it_is_the_sdks_own(
    era: Era, middleware: type[Any] | None, served: int
) -> None:
    """Recognised by class, not by name: a user's middleware named like the SDK's still sees every call."""

    def make() -> Plane:
        plane = make_plane()
        if middleware is not None:
            plane.sdk.middleware.append(middleware())
        return plane

    compared = await answers_of(make, era, [_call()])
    assert compared.fast == compared.sdk
    assert compared.served == served


class _CountingSchema(dict[str, Any]):
    """A schema that counts how often its ``repr`` is taken."""

    reprs = 0

    def __repr__(self) -> str:
        type(self).reprs += 1
        return super().__repr__()


@pytest.mark.parametrize(
    ("schema", "mapped"),
    [
        ({"type": "object", "properties": {"text": {"type": "string"}}}, False),
        ({"type": "object", "properties": {"where": {"type": "string", "x-mcp-header": "Region"}}}, True),
        ({"type": "object", "description": "mentions x-mcp-header in a value"}, True),
        (None, False),
    ],
)
def test_header_mapped_is_read_once_per_schema(schema: dict[str, Any] | None, mapped: bool) -> None:
    """A provider's tool is asked on every hot-path call: the schema is read once, the verdict the same."""
    from mcplane.sdk_adapter.eligibility import header_mapped

    counted = _CountingSchema(schema) if schema is not None else None
    _CountingSchema.reprs = 0
    assert [header_mapped(counted) for _ in range(3)] == [mapped] * 3
    assert _CountingSchema.reprs == (1 if counted is not None else 0)
    assert header_mapped(_CountingSchema(schema) if schema is not None else None) is mapped  # a new object: read again


_DIGITY = st.binary(max_size=120) | st.lists(
    st.sampled_from([b"0", b"7", b"9", b"/", b":", b"a", b"\xb9", b"\xd9", b"\x00", b"12345678901234567890"]),
    max_size=40,
).map(b"".join)


@settings(max_examples=500, deadline=None)
@given(body=_DIGITY)
def test_read_alike_finds_a_run_of_twenty_digits_where_the_regex_does(body: bytes) -> None:
    assert read_alike(body) is (re.search(rb"[0-9]{20}", body) is None)


def test_read_alike_on_call_bodies() -> None:
    call = b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"arguments":{"n":%d}}}'
    assert read_alike(call % (12345678901234567, 2026072800112233))  # many digits, no run of twenty
    assert not read_alike(call % (1, 2**64 + 5))
    assert not read_alike(call % (2**70, 1))
    assert read_alike(b"9" * 19)
    assert not read_alike(b"9" * 20)
    assert read_alike(b"")

"""The gateway's plain-result shortcut (:func:`mcplane.sdk_adapter.client.plain_tool_result`) says
"plain" only for raw ``tools/call`` results that the SDK's per-version result check passes and
that carry no key of a later revision, at every revision: for those the gateway skips the check
(``mcplane.gateway.forward``). Everything else still goes through the check, as before."""

from __future__ import annotations

import asyncio
import copy
from types import SimpleNamespace
from typing import Any, Literal

import pytest
from mcp.client.extension import ResultClaim
from mcp.client.session import (
    ClientSession,
    _build_call_tool_adapter,  # pyright: ignore[reportPrivateUsage]
)
from mcp_types import SERVER_INFO_META_KEY, CallToolResult, Result
from mcp_types import methods as _methods
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, ValidationError

from mcplane.gateway.forward import Request, _shape, without_server_info  # pyright: ignore[reportPrivateUsage]
from mcplane.sdk_adapter.client import (
    call_tool_result,
    later_revision_fields,
    plain_call_tool_result,
    plain_tool_result,
)

VERSIONS = (*HANDSHAKE_PROTOCOL_VERSIONS, *MODERN_PROTOCOL_VERSIONS)
TEXT = {"type": "text", "text": "hello"}
STAMP = {SERVER_INFO_META_KEY: {"name": "upstream", "version": "1.0"}}
BIG = {"type": "text", "text": "x" * 1_000_000}

SHAPES: dict[str, tuple[dict[str, Any], bool]] = {
    # name: (raw result without resultType, plain at every revision)
    "one text block": ({"content": [TEXT]}, True),
    "no content blocks": ({"content": []}, True),
    "many text blocks": ({"content": [TEXT] * 50}, True),
    "a big text block": ({"content": [BIG]}, True),
    "unicode text": ({"content": [{"type": "text", "text": "é😀\u0000"}]}, True),
    "error result": ({"content": [TEXT], "isError": True}, True),
    "not an error": ({"content": [TEXT], "isError": False}, True),
    "structured content": ({"content": [TEXT], "structuredContent": {"result": "hello", "n": [1, 2.5, None]}}, True),
    "structured content with an error": ({"content": [TEXT], "structuredContent": {}, "isError": True}, True),
    "serverInfo stamp": ({"content": [TEXT], "_meta": STAMP}, True),
    "garbled serverInfo stamp": ({"content": [TEXT], "_meta": {SERVER_INFO_META_KEY: 5}}, True),
    "other meta": ({"content": [TEXT], "_meta": {"a": 1, "": None}}, True),
    "null isError": ({"content": [TEXT], "isError": None}, False),
    "string isError": ({"content": [TEXT], "isError": "yes"}, False),
    "numeric isError": ({"content": [TEXT], "isError": 1}, False),
    "structured list": ({"content": [TEXT], "structuredContent": [1]}, False),
    "null structured content": ({"content": [TEXT], "structuredContent": None}, False),
    "meta not an object": ({"content": [TEXT], "_meta": [1]}, False),
    "null meta": ({"content": [TEXT], "_meta": None}, False),
    "no content": ({"structuredContent": {"a": 1}}, False),
    "content not a list": ({"content": TEXT}, False),
    "null content": ({"content": None}, False),
    "image block": ({"content": [{"type": "image", "data": "aGk=", "mimeType": "image/png"}]}, False),
    "resource link": ({"content": [{"type": "resource_link", "uri": "file:///a", "name": "a"}]}, False),
    "text block with annotations": ({"content": [{**TEXT, "annotations": {"priority": 0.5}}]}, False),
    "text block with _meta": ({"content": [{**TEXT, "_meta": {"a": 1}}]}, False),
    "text block without text": ({"content": [{"type": "text"}]}, False),
    "text not a string": ({"content": [{"type": "text", "text": 5}]}, False),
    "block not an object": ({"content": ["hello"]}, False),
    "unknown type": ({"content": [{"type": "video", "text": "a"}]}, False),
    "unknown key": ({"content": [TEXT], "extra": 1}, False),
    "input requests": ({"content": [TEXT], "inputRequests": {}}, False),
    "request state": ({"content": [TEXT], "requestState": "s"}, False),
    "task": ({"content": [TEXT], "task": {"taskId": "t"}}, False),
}


def check_passes(raw: dict[str, Any], version: str) -> bool:
    try:
        _methods.validate_server_result("tools/call", version, copy.deepcopy(raw))
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", sorted(SHAPES))
def test_plain_only_where_the_check_passes_and_nothing_is_dropped(name: str, version: str) -> None:
    raw, plain = SHAPES[name]
    if version in MODERN_PROTOCOL_VERSIONS:
        raw = {**raw, "resultType": "complete"}
    assert plain_tool_result(raw, version) is plain
    if plain:
        assert check_passes(raw, version)
        assert later_revision_fields("tools/call", version).isdisjoint(raw)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("result_type", [None, "complete", "input_required", "task", "other", 1])
def test_result_type(version: str, result_type: Any) -> None:
    raw: dict[str, Any] = {"content": [TEXT]}
    if result_type is not None:
        raw["resultType"] = result_type
    plain = plain_tool_result(raw, version)
    modern = version in MODERN_PROTOCOL_VERSIONS
    # 2026-07-28 requires resultType; earlier revisions do not know it (left to the check's path).
    assert plain is ((modern and result_type == "complete") or (not modern and result_type is None))
    if plain:
        assert check_passes(raw, version)
        assert later_revision_fields("tools/call", version).isdisjoint(raw)


def test_an_unknown_version_is_never_plain() -> None:
    assert plain_tool_result({"content": [TEXT]}, "2099-01-01") is False


def test_the_result_is_not_changed() -> None:
    raw = {"content": [TEXT], "structuredContent": {"a": 1}, "_meta": STAMP}
    before = copy.deepcopy(raw)
    assert plain_tool_result(raw, "2025-11-25") is True
    assert raw == before


# --- the plain result built directly (``plain_call_tool_result``) against the session's adapter ---


class Pending(Result):
    """An extension's claimed ``tools/call`` result, to build a session adapter with an extension arm."""

    result_type: Literal["pending"] = "pending"
    ticket: str = ""


async def _never(result: Pending, ctx: Any) -> CallToolResult:  # pragma: no cover - never resolved here
    raise AssertionError


def session_at(version: str, *, claims: bool) -> ClientSession:
    """A client session as far as reading ``tools/call`` results goes (its adapter and claims)."""
    session = ClientSession.__new__(ClientSession)
    active: dict[str, ResultClaim[Any]] = {}
    if claims and version in MODERN_PROTOCOL_VERSIONS:
        active["pending"] = ResultClaim(result_type="pending", model=Pending, resolve=_never)
    session._active_claims = active  # pyright: ignore[reportPrivateUsage]
    session._call_tool_adapter = _build_call_tool_adapter(active)  # pyright: ignore[reportPrivateUsage]
    session._negotiated_version = version  # pyright: ignore[reportPrivateUsage]
    session._tool_output_schemas = {"echo": None}  # pyright: ignore[reportPrivateUsage]
    session._tool_output_validators = {}  # pyright: ignore[reportPrivateUsage]
    return session


def same_model(built: Any, validated: Any) -> None:
    """Equal models all the way down: type, values, fields set, extra and private state."""
    assert type(built) is type(validated)
    if isinstance(validated, BaseModel):
        assert built.__dict__.keys() == validated.__dict__.keys()
        assert built.model_fields_set == validated.model_fields_set
        assert built.__pydantic_extra__ == validated.__pydantic_extra__
        assert built.__pydantic_private__ == validated.__pydantic_private__
        for name in validated.__dict__:
            same_model(built.__dict__[name], validated.__dict__[name])
    elif isinstance(validated, list):
        assert len(built) == len(validated)  # pyright: ignore[reportUnknownArgumentType]
        for one, other in zip(built, validated, strict=True):  # pyright: ignore[reportUnknownArgumentType]
            same_model(one, other)
    else:
        assert built == validated


META_SHAPES: dict[str, dict[str, Any]] = {
    "only the stamp": {"_meta": STAMP},
    "the stamp and more": {"_meta": {**STAMP, "a": {"b": 1}}},
    "no stamp": {"_meta": {"a": 1}},
    "empty meta": {"_meta": {}},
    "no meta": {},
}


def plain_shapes() -> list[tuple[str, dict[str, Any]]]:
    shapes = [(name, raw) for name, (raw, plain) in SHAPES.items() if plain]
    shapes += [(f"meta: {name}", {"content": [TEXT], "isError": False, **extra}) for name, extra in META_SHAPES.items()]
    return shapes


@pytest.mark.parametrize("claims", [False, True], ids=["core adapter", "extension adapter"])
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("name", "raw"), plain_shapes(), ids=[name for name, _ in plain_shapes()])
def test_the_built_result_is_the_adapters_without_the_stamp(
    name: str, raw: dict[str, Any], version: str, claims: bool
) -> None:
    if version in MODERN_PROTOCOL_VERSIONS:
        raw = {**raw, "resultType": "complete"}
    session = session_at(version, claims=claims)
    assert plain_tool_result(raw, version)
    before = copy.deepcopy(raw)
    # The old path: the session's adapter, then model_copy without the upstream's stamp.
    validated = without_server_info(call_tool_result(session, copy.deepcopy(raw)))
    link: Any = SimpleNamespace(sdk=SimpleNamespace(session=session))
    request = Request("tools/call", {"name": "echo"}, "tools/call 'echo'", "echo")
    built = asyncio.run(_shape(link, request, raw))  # pyright: ignore[reportPrivateUsage]
    assert raw == before  # the raw answer is not changed
    same_model(built, validated)
    # What the gateway answers with is the model's dump: the same JSON either way.
    for options in ({}, {"exclude_unset": True}, {"exclude_none": True}):
        assert built.model_dump_json(by_alias=True, **options) == validated.model_dump_json(by_alias=True, **options)
    assert SERVER_INFO_META_KEY not in (built.meta or {})


def test_a_plain_result_skips_the_adapter() -> None:
    session = session_at("2026-07-28", claims=False)

    class Refuses:
        def validate_python(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the adapter ran on a plain result")

    refuses: Any = Refuses()
    session._call_tool_adapter = refuses  # pyright: ignore[reportPrivateUsage]
    link: Any = SimpleNamespace(sdk=SimpleNamespace(session=session))
    request = Request("tools/call", {"name": "echo"}, "tools/call 'echo'", "echo")
    raw = {"content": [TEXT], "_meta": STAMP, "resultType": "complete"}
    result = asyncio.run(_shape(link, request, raw))  # pyright: ignore[reportPrivateUsage]
    assert isinstance(result, CallToolResult)
    assert result.meta is None
    assert result.model_fields_set == {"content", "meta", "result_type"}


def test_a_result_type_an_extension_claims_is_left_to_the_adapter() -> None:
    session = session_at("2026-07-28", claims=True)
    assert plain_call_tool_result(session, {"content": [TEXT], "resultType": "pending"}) is None

"""One caller's request on its way to an upstream, and the answer on its way back, in the caller's era.

The gateway is a proxy: what an upstream offers a caller directly, it offers through the gateway.
:func:`send` puts a request (:class:`Request`: ``tools/call``, ``prompts/get``,
``resources/read``, ``completion/complete``, ``resources/subscribe``, ``tasks/*``) on a
:class:`~mcplane.gateway.endpoint.Link` — the endpoint's lean lane for Streamable HTTP, else the
SDK client's dispatcher — stamped by that link's SDK session, and shapes the raw answer as the
SDK client would (per-version result validation, the output-schema check of a tool result):

* **the caller's envelope** (:class:`Caller`): on a 2026-07-28 link the request carries the
  *caller's* client capabilities (so an upstream asks only for input the caller can give, refuses
  with ``-32021`` what it needs and the caller lacks, and creates tasks only for callers that
  declared the tasks extension) and the caller's log-level opt-in; a 2025-11-25 caller's
  capabilities travel without extensions, and its log messages are asked for at ``debug``
  (its session's ``logging/setLevel`` filters them at the gateway);
* **multi-round-trip input** (SEP-2322): the caller's ``inputResponses`` and ``requestState`` go
  upstream as they came (the gateway's own request-state seal is already off), and an
  ``input_required`` answer goes back to a 2026-07-28 caller as it is; for a 2025-11-25 caller the
  gateway asks the caller each question itself (server-to-client requests on its session) and
  sends the answers upstream, round after round (at most :data:`MAX_ROUNDS`);
* **tasks**: a ``CreateTaskResult`` (``resultType: "task"``) goes back as it is; the provider
  remembers which upstream holds the task (:mod:`mcplane.gateway.handlers` routes ``tasks/*``);
* **the gateway's own name**: the upstream's ``serverInfo`` stamp is taken off every result, so
  the gateway's own is stamped on the way out;
* **errors**: a JSON-RPC error that is about the request (:data:`PASS_THROUGH`: invalid params,
  unknown method, a missing client capability, a URL elicitation) reaches the caller as the
  upstream said it; other errors are read by :class:`~mcplane.gateway.upstream.Upstream`.
  ``-32020`` (a header mismatch: the link's copy of the tool's schema is stale) re-lists the tool
  on the link and resends once, as the SDK client does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from mcp.client.session import ClientRequestContext
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_NAME_HEADER, encode_header_value
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    HEADER_MISMATCH,
    INVALID_PARAMS,
    INVALID_REQUEST,
    LOG_LEVEL_META_KEY,
    METHOD_NOT_FOUND,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    PARSE_ERROR,
    SERVER_INFO_META_KEY,
    URL_ELICITATION_REQUIRED,
    CallToolResult,
    CompleteResult,
    ErrorData,
    GetPromptResult,
    InputRequiredResult,
    ReadResourceResult,
)
from mcp_types import methods as _methods
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, ValidationError

from mcplane.errors import UpstreamError
from mcplane.gateway.lean import HandOver, Progress
from mcplane.gateway.relay import caller_is_modern, progress_relay
from mcplane.sdk_adapter.client import (
    call_tool_result,
    clamp_inbound_ttl,
    later_revision_fields,
    negotiated_version,
    output_known_valid,
    plain_call_tool_result,
    plain_tool_result,
    relist_tool,
    send_raw,
    stamp,
)
from mcplane.sdk_adapter.context import input_params_of, request_context_of

if TYPE_CHECKING:
    from mcplane.context import Context
    from mcplane.gateway.endpoint import Link

__all__ = ["MAX_ROUNDS", "PASS_THROUGH", "Caller", "Request", "passes_through", "send", "without_server_info"]

MAX_ROUNDS = 10
"""Input rounds the gateway answers for a 2025-11-25 caller before it gives up (the SDK client's cap)."""

PASS_THROUGH = frozenset(
    {INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, MISSING_REQUIRED_CLIENT_CAPABILITY, URL_ELICITATION_REQUIRED}
)
"""JSON-RPC error codes of an upstream's answer that are the caller's to act on: relayed as they came."""

_MRTR_METHODS = frozenset({"tools/call", "prompts/get", "resources/read"})
_RESULTS: dict[str, type[BaseModel]] = {
    "prompts/get": GetPromptResult,
    "resources/read": ReadResourceResult,
    "completion/complete": CompleteResult,
}


@dataclass(frozen=True, slots=True)
class Request:
    """A request for an upstream, in the upstream's own names (``params`` in wire form, no ``_meta``)."""

    method: str
    params: dict[str, Any]
    what: str
    """How errors and logs name it (``tools/call 'echo'``)."""
    tool: str | None = None
    """The upstream's tool name of a ``tools/call`` (its output schema, its ``x-mcp-header`` map)."""


@dataclass(frozen=True, slots=True)
class Caller:
    """What of the caller travels upstream: its era, capabilities, log opt-in, progress, input answers."""

    ctx: Context
    modern: bool
    capabilities: dict[str, Any]
    """Wire form (``{}``: it declared none)."""
    log_level: str | None
    progress: Progress | None
    input_responses: dict[str, Any] | None
    request_state: str | None

    @classmethod
    def of(cls, ctx: Context) -> Caller:
        modern = caller_is_modern(ctx)
        request_context = request_context_of(ctx)
        capabilities: Any = None
        if request_context is not None:
            declared = request_context.session.client_capabilities
            if declared is not None:
                capabilities = declared.model_dump(by_alias=True, mode="json", exclude_none=True)
        else:
            capabilities = ctx.request_meta.get(CLIENT_CAPABILITIES_META_KEY)
        capabilities = dict(cast("Mapping[str, Any]", capabilities)) if isinstance(capabilities, Mapping) else {}
        if not modern:
            capabilities.pop("extensions", None)  # a 2025-11-25 answer cannot carry an extension's result
        level: Any = ctx.request_meta.get(LOG_LEVEL_META_KEY) if modern else "debug"
        responses: Any = None
        state: str | None = None
        params: Any = input_params_of(ctx)
        answers: Any = getattr(params, "input_responses", None)
        if isinstance(answers, Mapping) and answers:
            responses = {key: _wire(value) for key, value in cast("Mapping[str, Any]", answers).items()}
        found: Any = getattr(params, "request_state", None)
        state = found if isinstance(found, str) else None
        return cls(
            ctx=ctx,
            modern=modern,
            capabilities=capabilities,
            log_level=level if isinstance(level, str) else None,
            progress=progress_relay(ctx),
            input_responses=responses,
            request_state=state,
        )


def passes_through(exc: MCPError) -> bool:
    """Whether an upstream's JSON-RPC error is relayed to the caller as it came (:data:`PASS_THROUGH`)."""
    return exc.code in PASS_THROUGH


async def send(link: Link, request: Request, meta: Mapping[str, Any], caller: Caller) -> Any:
    """``request`` on ``link`` for ``caller``; the result the gateway answers with (see the module doc)."""
    params = dict(request.params)
    if request.method in _MRTR_METHODS and link.modern:
        if caller.input_responses is not None:
            params["inputResponses"] = caller.input_responses
        if caller.request_state is not None:
            params["requestState"] = caller.request_state
    result = await _round(link, request, params, meta, caller)
    rounds = 0
    while isinstance(result, InputRequiredResult) and not caller.modern:
        rounds += 1  # a 2025-11-25 caller: the gateway asks it each question, then resends
        if rounds > MAX_ROUNDS:
            raise UpstreamError(f"the upstream kept asking for input after {MAX_ROUNDS} rounds of {request.what}")
        answers: dict[str, Any] = {}
        session = link.sdk.session
        for key, question in (result.input_requests or {}).items():
            context = ClientRequestContext(session=session, request_id=key)
            answer = await session.dispatch_input_request(context, question)
            if isinstance(answer, ErrorData):
                raise MCPError.from_error_data(answer)
            answers[key] = _wire(answer)
        params = {**params, "inputResponses": answers}
        params.pop("requestState", None)
        if result.request_state is not None:
            params["requestState"] = result.request_state
        result = await _round(link, request, params, meta, caller)
    return result


async def _round(link: Link, request: Request, params: dict[str, Any], meta: Mapping[str, Any], caller: Caller) -> Any:
    try:
        raw = await _exchange(link, request, params, meta, caller)
    except MCPError as exc:
        if exc.code != HEADER_MISMATCH or not link.modern or request.tool is None:
            raise
        # The spec's recovery, as the SDK client does it: re-list so the x-mcp-header map is current, resend once.
        await relist_tool(link.sdk, request.tool)
        raw = await _exchange(link, request, params, meta, caller)
    return await _shape(link, request, raw)


async def _exchange(
    link: Link, request: Request, params: dict[str, Any], meta: Mapping[str, Any], caller: Caller
) -> dict[str, Any]:
    session = link.sdk.session
    data: dict[str, Any] = {"method": request.method, "params": {**params, "_meta": dict(meta)}}
    options = stamp(session, data)  # the SDK's own envelope and headers
    if link.modern:  # the caller's envelope, not the gateway's (see the module doc)
        task_id = params.get("taskId")
        if request.method.startswith("tasks/") and isinstance(task_id, str):  # the extension's routing header
            options.setdefault("headers", {})[MCP_NAME_HEADER] = encode_header_value(task_id)
        envelope: dict[str, Any] = data["params"]["_meta"]
        envelope[CLIENT_CAPABILITIES_META_KEY] = caller.capabilities
        if caller.log_level is not None:
            envelope[LOG_LEVEL_META_KEY] = caller.log_level
        else:
            envelope.pop(LOG_LEVEL_META_KEY, None)
    if link.lane is not None:
        try:
            return await link.lane.send(link.sdk, data, options, progress=caller.progress)
        except HandOver:
            pass
    if caller.progress is not None:
        options["on_progress"] = caller.progress  # pyright: ignore[reportGeneralTypeIssues]
    return await send_raw(session, data, options)


async def _shape(link: Link, request: Request, raw: dict[str, Any]) -> Any:
    """The raw result as the SDK client reads it, without the upstream's ``serverInfo`` stamp."""
    session = link.sdk.session
    clamp_inbound_ttl(raw)
    if raw.get("resultType") == "task" and request.method == "tools/call":
        return without_server_info(raw)  # the tasks extension's CreateTaskResult: the caller's to read
    method = request.method
    version = negotiated_version(session)
    try:
        if method in _MRTR_METHODS and _methods.is_input_required(raw):
            if version not in MODERN_PROTOCOL_VERSIONS:
                raise _invalid(f"{request.what} answered input_required on a 2025-11-25 session")
            return without_server_info(InputRequiredResult.model_validate(raw, by_name=False))
        plain = method == "tools/call" and plain_tool_result(raw, version)
        if not plain:  # a plain result passes both
            try:
                _methods.validate_server_result(method, version, raw)
            except KeyError:
                pass
            if not (foreign := later_revision_fields(method, version)).isdisjoint(raw):
                raw = {key: value for key, value in raw.items() if key not in foreign}
        if method == "tools/call":
            # A plain result is built once, already without the stamp (no adapter pass, no model_copy).
            result = plain_call_tool_result(session, _raw_without_server_info(raw)) if plain else None
            if result is None:
                result = without_server_info(call_tool_result(session, raw))
            if (
                isinstance(result, CallToolResult)
                and not result.is_error
                and request.tool is not None
                and not output_known_valid(session, request.tool, result)
            ):
                await session.validate_tool_result(request.tool, result)
            return result
        model = _RESULTS.get(method)
        return without_server_info(model.model_validate(raw, by_name=False) if model is not None else raw)
    except ValidationError:
        raise _invalid(f"{request.what} answered a result that does not validate") from None


def _invalid(why: str) -> MCPError:
    """The SDK transport's stand-in for a garbled answer (see ``upstream._STAND_INS``)."""
    return MCPError(PARSE_ERROR, f"Failed to parse JSON response: {why}")


def without_server_info(result: Any) -> Any:
    """``result`` (a model or a wire dict) without ``_meta["io.modelcontextprotocol/serverInfo"]``."""
    if isinstance(result, BaseModel):
        meta: Any = getattr(result, "meta", None)
        if isinstance(meta, dict) and SERVER_INFO_META_KEY in meta:
            kept = {key: value for key, value in cast("dict[str, Any]", meta).items() if key != SERVER_INFO_META_KEY}
            return result.model_copy(update={"meta": kept or None})
        return result
    if isinstance(result, dict):
        body = cast("dict[str, Any]", result)
        meta = body.get("_meta")
        if isinstance(meta, dict) and SERVER_INFO_META_KEY in meta:
            kept = {key: value for key, value in cast("dict[str, Any]", meta).items() if key != SERVER_INFO_META_KEY}
            body = {key: value for key, value in body.items() if key != "_meta"}
            if kept:
                body["_meta"] = kept
        return body
    return result


def _raw_without_server_info(raw: dict[str, Any]) -> dict[str, Any]:
    """A raw result without the ``serverInfo`` stamp, as :func:`without_server_info` leaves its model:
    a ``_meta`` left empty is ``None`` (set, as ``model_copy`` sets it), not dropped."""
    meta: Any = raw.get("_meta")
    if isinstance(meta, dict) and SERVER_INFO_META_KEY in meta:
        kept = {key: value for key, value in cast("dict[str, Any]", meta).items() if key != SERVER_INFO_META_KEY}
        return {**raw, "_meta": kept or None}
    return raw


def _wire(value: Any) -> Any:
    return value.model_dump(by_alias=True, mode="json", exclude_none=True) if isinstance(value, BaseModel) else value

"""One replica of an OpenAPI upstream (a base URL) and one call of an operation on it.

A replica is an :class:`~mcplane.gateway.endpoint.EndpointConnection` whose link is an HTTP
client instead of an MCP session, so the gateway's balancer, breakers, retries, shared state,
readiness and metrics treat it as any replica. It is connected while its health probe (a GET of
``health_check``) answers 2xx, or always when there is no probe.

How an answer maps (the breaker counts 5xx and transport failures against the replica; every
other status is an answer):

======================  ==========================  ===========================
API answer              error code                  replica
======================  ==========================  ===========================
2xx                     (the result)                success
400, 422                ``invalid_arguments``       success (an answer)
401, 403                ``forbidden``               success
404                     ``not_found``               success
429                     ``rate_limited`` (+ wait)   success
3xx, other 4xx          ``upstream_error``          success
5xx                     ``upstream_error``          failure (retried if safe)
no connection           ``dependency_unavailable``  failure (retried if safe)
answer over the cap     ``upstream_error``          success
======================  ==========================  ===========================

The error's ``details`` carry the status and the API's body (problem details or whatever it
sent), cut to a bounded size.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

import anyio
import httpx2 as httpx
from mcp_types import CallToolResult, TextContent

from mcplane.context import TIMEOUT_META_KEY
from mcplane.errors import (
    DependencyUnavailable,
    Forbidden,
    InvalidArguments,
    MCPlaneError,
    NotFound,
    RateLimited,
    UpstreamError,
)
from mcplane.gateway.config import HTTPEndpoint, UpstreamConfig
from mcplane.gateway.endpoint import EndpointConnection, Link
from mcplane.gateway.identity import call_headers
from mcplane.gateway.upstream import LinkOutcome

if TYPE_CHECKING:
    from collections.abc import Callable

    from mcp import Client as SDKClient

    from mcplane.openapi.auth import ApiCredentials
    from mcplane.openapi.config import OpenAPIConfig
    from mcplane.openapi.operations import Operation

__all__ = ["RestLink", "RestReplica", "call_operation"]

logger = logging.getLogger("mcplane.openapi")

MAX_DETAIL_BYTES = 2048
"""The API's error body kept in ``details.body`` at most (serialized)."""


@dataclass(frozen=True, slots=True)
class RestLink(Link):
    """The link of a REST replica: its HTTP client (``sdk`` identifies the replica)."""

    replica: RestReplica | None = None

    @property
    def modern(self) -> bool:
        return False


class _Up:
    """What ``EndpointConnection.sdk`` holds while a REST replica is connected (it has no MCP session)."""

    protocol_version = "rest"


class RestReplica(EndpointConnection):
    def __init__(
        self,
        upstream: str,
        index: int,
        endpoint: HTTPEndpoint,
        config: UpstreamConfig,
        openapi: OpenAPIConfig,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        async def no_refresh(endpoint: EndpointConnection, client: SDKClient) -> None:
            return None

        super().__init__(upstream, index, endpoint, config, refresh=no_refresh, clock=clock)
        self.openapi = openapi
        self.base_url = endpoint.url.rstrip("/")
        self.client: httpx.AsyncClient | None = None
        self._up = cast("SDKClient", _Up())

    def link(self, *, modern_caller: bool) -> Link | None:
        if self.sdk is None:
            return None
        return RestLink(self.sdk, None, self)

    def mark_broken(self) -> None:
        if self.openapi.health_check is not None:  # the probe decides when it is back
            super().mark_broken()

    def _client_factory(self) -> httpx.AsyncClient:
        verify: Any = True
        tls = self.config.tls
        if self.base_url.startswith("https://"):
            from mcplane.tls import client_context

            verify = (
                client_context()
                if tls is None
                else client_context(
                    ca=tls.ca.get() if tls.ca is not None else None,
                    cert=tls.cert.get() if tls.cert is not None else None,
                    key=tls.key.get() if tls.key is not None else None,
                    verify=tls.verify,
                    server_name=tls.server_name,
                )
            )
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
        return httpx.AsyncClient(verify=verify, timeout=None, limits=limits, follow_redirects=False)

    async def run(self) -> None:
        """Hold the HTTP client; probe ``health_check`` every ``health_check.interval`` (when set)."""
        path = self.openapi.health_check
        async with self._client_factory() as client:
            self.client = client
            try:
                while not self._closing:
                    healthy = True if path is None else await self._probe(client, path)
                    was = self.sdk is not None
                    self.sdk = self._up if healthy else None
                    self._broken = False
                    if healthy and not was:
                        self.connections += 1
                        logger.info("upstream %s: connected", self.name)
                    elif was and not healthy:
                        logger.warning("upstream %s: health check failed", self.name)
                    if healthy != was:
                        self._status()
                    self.first_attempt.set()
                    with anyio.move_on_after(self.config.health_check.interval if path else float("inf")):
                        await self._wait_wake()
            finally:
                self.sdk = None
                self.client = None
                self.first_attempt.set()

    async def _probe(self, client: httpx.AsyncClient, path: str) -> bool:
        try:
            with anyio.fail_after(self.config.connect_timeout):
                response = await client.get(self.base_url + path)
            return 200 <= response.status_code < 300
        except Exception as exc:
            logger.debug("upstream %s: probe failed: %r", self.name, exc)
            return False


# ----------------------------------------------------------------- one call
def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _simple(value: Any, explode: bool) -> str:
    if isinstance(value, list):
        return ",".join(_scalar(v) for v in cast("list[Any]", value))
    if isinstance(value, dict):
        items = cast("dict[str, Any]", value).items()
        if explode:
            return ",".join(f"{k}={_scalar(v)}" for k, v in items)
        return ",".join(f"{k},{_scalar(v)}" for k, v in items)
    return _scalar(value)


def _query(name: str, value: Any, style: str, explode: bool) -> list[tuple[str, str]]:
    if isinstance(value, list):
        values = [_scalar(v) for v in cast("list[Any]", value)]
        if explode and style == "form":
            return [(name, v) for v in values]
        sep = {"spaceDelimited": " ", "pipeDelimited": "|"}.get(style, ",")
        return [(name, sep.join(values))]
    if isinstance(value, dict):
        items = cast("dict[str, Any]", value).items()
        if style == "deepObject":
            return [(f"{name}[{k}]", _scalar(v)) for k, v in items]
        if explode:
            return [(k, _scalar(v)) for k, v in items]
        return [(name, ",".join(f"{k},{_scalar(v)}" for k, v in items))]
    return [(name, _scalar(value))]


def _header_safe(name: str, text: str, *, ascii_only: bool = False) -> str:
    if any(c in text for c in "\r\n\0"):
        raise InvalidArguments(f"argument {name!r}: a header value may not contain line breaks")
    if ascii_only and not all(" " <= c <= "~" or c == "\t" for c in text):
        raise InvalidArguments(f"argument {name!r}: a header value must be printable ASCII")
    return text


def build_request(
    op: Operation, arguments: Mapping[str, Any]
) -> tuple[str, list[tuple[str, Any]], dict[str, str], dict[str, str], dict[str, Any]]:
    """``(path, query, headers, cookies, body keywords for httpx)`` of a call of ``op``."""
    args = {**arguments, **op.fixed}
    path = op.path
    query: list[tuple[str, Any]] = []
    headers: dict[str, str] = {}
    cookies: dict[str, str] = {}
    for param in op.params:
        value = args.get(param.arg)
        if value is None:
            if param.location == "path":
                raise InvalidArguments(f"missing path argument {param.arg!r}", details={"argument": param.arg})
            continue
        if param.location == "path":
            text = _simple(value, param.explode)
            if text in ("", ".", ".."):
                raise InvalidArguments(f"argument {param.arg!r}: {text!r} is not a path segment")
            path = path.replace("{" + param.name + "}", quote(text, safe=""))
        elif param.location == "query":
            query.extend(_query(param.name, value, param.style, param.explode))
        elif param.location == "header":
            headers[param.name] = _header_safe(param.arg, _simple(value, param.explode), ascii_only=True)
        elif param.location == "cookie":
            cookies[param.name] = _header_safe(param.arg, _simple(value, param.explode))
    body: dict[str, Any] = {}
    spec = op.body
    if spec is not None:
        if spec.spread is not None:
            payload: Any = {prop: args[arg] for arg, prop in spec.spread.items() if arg in args}
            present = bool(payload) or spec.required
        else:
            payload = args.get(spec.arg)
            present = spec.arg in args
        if present:
            if spec.media == "json":
                body["content"] = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
                headers["Content-Type"] = spec.content_type
            elif not isinstance(payload, dict):
                raise InvalidArguments(f"argument {spec.arg!r}: a form body must be an object")
            elif spec.media == "form":
                body["data"] = {k: _scalar(v) for k, v in cast("dict[str, Any]", payload).items()}
            else:
                body["files"] = {k: (None, _scalar(v)) for k, v in cast("dict[str, Any]", payload).items()}
    return path, query, headers, cookies, body


async def call_operation(
    link: RestLink,
    op: Operation,
    arguments: Mapping[str, Any],
    meta: Mapping[str, Any],
    credentials: ApiCredentials,
    upstream: str,
) -> CallToolResult:
    """One attempt of ``op`` on ``link``'s replica: the tool result, or :class:`LinkOutcome`."""
    replica = link.replica
    assert replica is not None
    client = replica.client
    if client is None:
        raise LinkOutcome(DependencyUnavailable(f"upstream {upstream!r} is unavailable"), replica_failed=True)
    config = replica.openapi
    path, query, headers, cookies, body = build_request(op, arguments)
    base_headers: dict[str, str] = {"Accept": "application/json, */*;q=0.5"}
    base_headers.update({k: v.get() for k, v in config.headers.items()})
    if config.deadline_header and isinstance(ms := meta.get(TIMEOUT_META_KEY), int | float):
        base_headers[config.deadline_header] = str(int(ms))
    for key in ("traceparent", "tracestate"):
        if isinstance(value := meta.get(key), str):
            base_headers[key] = value
    identity = call_headers.get()
    for fresh in (False, True):  # a refreshable token the API refused (401): once more with a new one
        creds = await credentials.apply(client)
        out_headers = {**base_headers, **creds.headers, **headers, **(identity or {})}
        all_cookies = {**cookies, **creds.cookies}
        if all_cookies:
            out_headers["Cookie"] = "; ".join(f"{k}={quote(v, safe='')}" for k, v in all_cookies.items())
        try:
            request = client.build_request(
                op.method.upper(),
                replica.base_url + path,
                params=[*query, *creds.query.items()],
                headers=out_headers,
                **body,
            )
        except httpx.InvalidURL as exc:  # a component over the URL's length limit
            raise InvalidArguments(f"{op.name}: the arguments make no valid URL ({exc})") from None
        started = time.monotonic()
        try:
            response = await client.send(request, stream=True)
        except httpx.TransportError as exc:
            logger.info("upstream %s: %s %s failed: %r", replica.name, op.method.upper(), path, exc)
            raise LinkOutcome(
                DependencyUnavailable(
                    f"upstream {upstream!r} is unavailable ({op.name} failed)",
                    details={"dependency": upstream, "reason": type(exc).__name__},
                ),
                replica_failed=True,
            ) from None
        try:
            data = await _read(response, config.max_response_bytes, upstream, op.name)
        finally:
            await response.aclose()
        logger.debug(
            "upstream %s: %s %s -> %d in %.3f s",
            replica.name,
            op.method.upper(),
            path,
            response.status_code,
            time.monotonic() - started,
        )
        if response.status_code != 401:
            break
        credentials.rejected()
        if fresh or not credentials.refreshable or identity:
            break
    status = response.status_code
    content_type = response.headers.get("content-type", "")
    if status >= 300:  # redirects are not followed: the API answered somewhere else
        error = _error_of(status, response.headers, content_type, data, upstream, op.name)
        raise LinkOutcome(error, replica_failed=status >= 500)
    return _result(op, data, content_type, upstream)


async def _read(response: httpx.Response, limit: int, upstream: str, tool: str) -> bytes:
    """The body (decompressed piecewise, so a small compressed answer never inflates in memory
    past the cap), at most ``limit`` bytes."""
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise LinkOutcome(_too_large(upstream, tool, limit), replica_failed=False)
    data = bytearray()
    try:
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) > limit:
                raise LinkOutcome(_too_large(upstream, tool, limit), replica_failed=False)
    except httpx.DecodingError:  # says gzip (or another encoding) and is not
        encoding = response.headers.get("content-encoding", "")
        raise LinkOutcome(_bad_encoding(upstream, tool, encoding), replica_failed=False) from None
    return bytes(data)


def _bad_encoding(upstream: str, tool: str, encoding: str) -> UpstreamError:
    return UpstreamError(
        f"upstream {upstream!r} answered {tool} with a body that does not decode ({encoding[:40]})",
        details={"reason": "bad_content_encoding"},
    )


def _too_large(upstream: str, tool: str, limit: int) -> UpstreamError:
    return UpstreamError(
        f"upstream {upstream!r} answered {tool} with more than {limit} bytes",
        details={"reason": "response_too_large", "limit": limit},
    )


def _is_json(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _decode(data: bytes, content_type: str) -> Any:
    return _parse(data, content_type)[0]


def _parse(data: bytes, content_type: str) -> tuple[Any, bool]:
    """The body, and whether it is JSON (else text, invalid UTF-8 replaced; ``None`` when empty)."""
    if not data:
        return None, False
    if _is_json(content_type):
        try:
            return json.loads(data), True
        except (ValueError, RecursionError):
            pass
    return data.decode("utf-8", errors="replace"), False


def _bounded(body: Any) -> Any:
    if body is None:
        return None
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    if len(text) <= MAX_DETAIL_BYTES:
        return body
    return text[: MAX_DETAIL_BYTES - 1] + "…"


def _retry_after(value: str | None) -> int | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value) * 1000
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0, int((when.timestamp() - time.time()) * 1000))


def _error_of(
    status: int, headers: httpx.Headers, content_type: str, data: bytes, upstream: str, tool: str
) -> MCPlaneError:
    body = _decode(data, content_type)
    details: dict[str, Any] = {"status": status, "upstream": upstream}
    if body is not None:
        details["body"] = _bounded(body)
    said = ""
    if isinstance(body, dict):
        b = cast("dict[str, Any]", body)
        said = str(b.get("detail") or b.get("title") or b.get("message") or b.get("error") or "")[:200]
    message = f"{tool}: the API answered {status}" + (f": {said}" if said else "")
    if status in (400, 422):
        return InvalidArguments(message, details=details)
    if status in (401, 403):
        return Forbidden(message, details=details)
    if status == 404:
        return NotFound(message, details=details)
    if status == 429:
        return RateLimited(message, retry_after_ms=_retry_after(headers.get("retry-after")), details=details)
    return UpstreamError(message, details=details)


def _result(op: Operation, data: bytes, content_type: str, upstream: str) -> CallToolResult:
    body, parsed = _parse(data, content_type)
    if op.wrap is not None and body is not None and (not parsed or (not op.wrap and not isinstance(body, dict))):
        # The tool declares an output schema: text (not JSON, or not labelled JSON) or a non-object
        # where an object is declared would break it (a client validating structuredContent refuses it).
        raise LinkOutcome(
            UpstreamError(
                f"upstream {upstream!r} answered {op.name} with a body its document does not declare",
                details={"reason": "response_mismatch", "content_type": content_type[:100]},
            ),
            replica_failed=False,
        )
    if body is None:
        text = ""
    elif isinstance(body, str):
        text = body
    else:
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    structured: dict[str, Any] | None = None
    if (body is not None and not isinstance(body, str)) or op.wrap is not None:
        wrap = op.wrap if op.wrap is not None else not isinstance(body, dict)
        structured = {"result": body} if wrap else cast("dict[str, Any]", body)
        if not wrap and not isinstance(body, dict):
            structured = {"result": body}
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)

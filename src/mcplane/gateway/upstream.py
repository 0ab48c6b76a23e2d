"""One upstream: its replicas, its catalog, and how one request reaches it.

A request picks a replica with the balancer (skipping disconnected ones and open circuits),
claims the replica's breaker, and is sent with the caller's remaining deadline and trace context
in ``_meta``. A transport failure or an attempt timeout counts against the replica's breaker and,
when the call may be repeated safely, is retried on another replica after a jittered backoff that
never runs past the deadline. An answer — even a tool error or a JSON-RPC error — counts as a
success: the replica is alive. What is not an answer counts as a failure: a body that is not
JSON-RPC or an HTTP error status (``upstream_error`` with ``details.reason``), and a session the
upstream no longer knows (it restarted: the replica reconnects, the call is ``dependency_unavailable``).

Around each attempt the task carries the caller (:data:`~mcplane.gateway.relay.current_caller`,
for an upstream's questions) and, per ``identity:``, the caller's identity (headers or
``_meta``, see :mod:`mcplane.gateway.identity`). Each attempt is counted in
``mcplane_upstream_calls_total`` by outcome when metrics are on; a changed catalog is announced
to gateway clients through :attr:`Upstream.relay`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from mcp import Client as SDKClient
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    PARSE_ERROR,
    CallToolResult,
    Prompt,
    Resource,
    ResourceTemplate,
    Tool,
)

from mcplane.client._errors import from_mcp_error, is_transport_error, unwrap  # pyright: ignore[reportPrivateUsage]
from mcplane.context import TIMEOUT_META_KEY, Context
from mcplane.errors import CircuitOpen, DependencyUnavailable, MCPlaneError, Timeout, UpstreamError, error_object_of
from mcplane.gateway.balancer import Balancer
from mcplane.gateway.config import SEPARATOR, UpstreamConfig
from mcplane.gateway.endpoint import EndpointConnection
from mcplane.gateway.forward import passes_through
from mcplane.gateway.forward import send as forward_send
from mcplane.gateway.identity import PRINCIPAL_META_KEY, call_headers, identity_headers, identity_meta
from mcplane.gateway.relay import caller_is_modern, current_caller
from mcplane.gateway.retry import backoff
from mcplane.gateway.token_exchange import TokenExchange

if TYPE_CHECKING:
    from mcplane.gateway.endpoint import Link
    from mcplane.gateway.forward import Caller, Request
    from mcplane.gateway.relay import ListChangedRelay
    from mcplane.observability.metrics import Metrics

__all__ = ["Catalog", "LinkOutcome", "Send", "Upstream"]

logger = logging.getLogger("mcplane.gateway")

_PAGE_CAP = 100
_DEADLINE_SLACK = 0.005
"""Seconds of deadline left that still count as none: the timeout slot's timer runs on the event
loop's clock, the deadline on ``time.monotonic``, and the two can disagree by a little."""

Send = Callable[["Link", dict[str, Any]], Awaitable[Any]]
"""Sends one attempt's request on a link with the attempt's ``_meta`` (see :mod:`mcplane.gateway.forward`)."""


@dataclass
class Catalog:
    """What an upstream offers, under its own (not namespaced) names."""

    tools: dict[str, Tool] = field(default_factory=dict)
    resources: list[Resource] = field(default_factory=list)
    templates: list[ResourceTemplate] = field(default_factory=list)
    prompts: dict[str, Prompt] = field(default_factory=dict)


class LinkOutcome(Exception):
    """Raised by a link that is not an MCP session (an OpenAPI replica, see :mod:`mcplane.openapi`)
    with the call's error and what it says of the replica: ``replica_failed`` counts against its
    breaker and may be retried on another replica; otherwise it is an answer (the replica is alive)."""

    def __init__(self, error: MCPlaneError, *, replica_failed: bool, outcome: str | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.replica_failed = replica_failed
        self.outcome = outcome or ("unavailable" if replica_failed else "error")


class _Retryable(Exception):
    def __init__(self, error: MCPlaneError) -> None:
        super().__init__(error.message)
        self.error = error


class Upstream:
    def __init__(
        self,
        name: str,
        config: UpstreamConfig,
        *,
        namespace: str | None = None,
        on_change: Callable[[], None] = lambda: None,
        clock: Callable[[], float] | None = None,
        rand: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[Any]] = anyio.sleep,
    ) -> None:
        self.name = name
        self.namespace: str | None = None if config.namespace is False else (namespace or config.namespace or name)
        """``None``: its names are exposed as they are (``namespace: false``)."""
        self.config = config
        self.catalog = Catalog()
        self.balancer = Balancer(config.load_balancing)
        self.endpoints = [
            EndpointConnection(name, index, endpoint, config, refresh=self._refresh, clock=clock)
            for index, endpoint in enumerate(config.endpoints)
        ]
        self._on_change = on_change
        self._rand = rand
        self._sleep = sleep
        self.relay: ListChangedRelay | None = None
        """Tells gateway clients when this upstream's catalog changes (set while the gateway runs)."""
        self.metrics: Metrics | None = None
        """Counts attempts by outcome (set while the gateway runs with metrics on)."""
        self._counted: tuple[Metrics | None, dict[tuple[str, str], Any]] = (None, {})
        """The ``upstream_calls`` series by endpoint and outcome, of the metrics they belong to."""
        self.exchange = TokenExchange(name, config.identity) if config.identity.mode == "exchange" else None
        """``identity: exchange``: the caller's token exchanged for this upstream's (cached)."""

    @property
    def prefix(self) -> str:
        """What its exposed names start with: ``<namespace>__``, or nothing."""
        return "" if self.namespace is None else self.namespace + SEPARATOR

    # ----------------------------------------------------------------- health
    def healthy(self) -> bool:
        """At least one replica is connected with a circuit that lets calls through."""
        return any(endpoint.can_take() for endpoint in self.endpoints)

    async def health(self) -> tuple[bool, str]:
        if self.healthy():
            return True, "ok"
        return False, self._down_reason()

    def _down_reason(self) -> str:
        if any(e.connected for e in self.endpoints):
            return "circuit open"
        return "not connected"

    def unavailable(self) -> MCPlaneError:
        """The error for a call when no replica can take it: ``circuit_open`` when every connected
        replica's circuit is open, ``dependency_unavailable`` when none is connected."""
        connected = [e for e in self.endpoints if e.connected]
        if connected:
            wait = min(e.breaker.retry_after() for e in connected)
            return CircuitOpen(f"upstream {self.name!r}: circuit open", retry_after_ms=max(1, int(wait * 1000)))
        return DependencyUnavailable(f"upstream {self.name!r} is unavailable", details={"dependency": self.name})

    # ----------------------------------------------------------------- catalog
    async def _refresh(self, endpoint: EndpointConnection, client: SDKClient) -> None:
        catalog = Catalog()
        capabilities = client.server_capabilities
        if capabilities.tools is not None:
            catalog.tools = {tool.name: tool for tool in await _all(client.list_tools, "tools")}
        if capabilities.resources is not None:
            catalog.resources = await _all(client.list_resources, "resources")
            catalog.templates = await _all(client.list_resource_templates, "resource_templates")
        if capabilities.prompts is not None:
            catalog.prompts = {prompt.name: prompt for prompt in await _all(client.list_prompts, "prompts")}
        if catalog != self.catalog:
            changed = _changed_kinds(self.catalog, catalog)
            self.catalog = catalog
            logger.info(
                "upstream %s: %d tools, %d resources, %d templates, %d prompts",
                self.name,
                len(catalog.tools),
                len(catalog.resources),
                len(catalog.templates),
                len(catalog.prompts),
            )
            self._on_change()
            if self.relay is not None:
                await self.relay.changed(changed)

    # ----------------------------------------------------------------- calls
    async def send(self, link: Link, request: Request, meta: dict[str, Any], caller: Caller) -> Any:
        """One attempt of ``request`` on ``link`` (an MCP session: :func:`mcplane.gateway.forward.send`)."""
        return await forward_send(link, request, meta, caller)

    async def request(
        self,
        send: Send,
        ctx: Context,
        *,
        retry: bool,
        what: str,
        endpoint: EndpointConnection | None = None,
        own_timeout: float | None = None,
    ) -> Any:
        """Send one request to a replica (retrying on another when ``retry``); returns its result.

        The replica serves it on the link for the caller's era (:meth:`EndpointConnection.link`).
        ``endpoint``: that replica and no other (a task lives on the replica that created it).
        ``own_timeout``: the call is bounded by this hop's own timeout (that many seconds), not by
        the caller's deadline; an upstream that stops at the deadline we passed it and says
        ``deadline_exceeded`` first then answers ``timeout``, as this hop's own timer would have.
        """
        retries = self.config.retries
        attempts = retries.attempts if retry else 1
        tried: list[EndpointConnection] = []
        last: MCPlaneError | None = None
        for attempt in range(1, attempts + 1):
            chosen = self.balancer.pick(self.endpoints, tried) if endpoint is None else endpoint
            if chosen is None:
                raise last if last is not None else self.unavailable()
            tried.append(chosen)
            try:
                return await self._attempt(chosen, send, ctx, what, own_timeout)
            except _Retryable as failure:
                last = failure.error
            if attempt < attempts:
                wait = backoff(attempt, retries, remaining=ctx.remaining(), rand=self._rand)
                logger.debug("upstream %s: retrying %s in %.3f s after %r", self.name, what, wait, last)
                await self._sleep(wait)
        assert last is not None
        raise last

    def _count(self, metrics: Metrics, endpoint: str, outcome: str) -> None:
        """One attempt in ``mcplane_upstream_calls_total`` (the labelled series looked up once)."""
        owner, series = self._counted
        if owner is not metrics:
            series = {}
            self._counted = (metrics, series)
        counter = series.get((endpoint, outcome))
        if counter is None:
            counter = series[endpoint, outcome] = metrics.upstream_calls.labels(
                upstream=self.name, endpoint=endpoint, outcome=outcome
            )
        counter.inc()

    async def _attempt(
        self, endpoint: EndpointConnection, send: Send, ctx: Context, what: str, own_timeout: float | None = None
    ) -> Any:
        identity = self.config.identity
        # Before the breaker: a refused or unreachable token service says nothing about the upstream.
        exchanged = await self.exchange.headers(ctx) if self.exchange is not None else None
        breaker = endpoint.breaker
        link = endpoint.link(modern_caller=caller_is_modern(ctx))
        remaining = ctx.remaining()
        limit = self.config.retries.attempt_timeout
        if link is None or not await breaker.claim(lease=limit or self.config.timeout or remaining):
            raise _Retryable(self.unavailable())
        meta = ctx.propagation_meta()
        own_limit = limit is not None and (remaining is None or limit < remaining)
        if own_limit:
            assert limit is not None
            meta[TIMEOUT_META_KEY] = int(limit * 1000)
        attempt_limit = limit if own_limit and limit is not None else 0.0
        if identity.mode == "meta" and (principal := identity_meta(ctx)) is not None:
            meta[PRINCIPAL_META_KEY] = principal
        headers = exchanged if self.exchange is not None else identity_headers(identity, ctx)
        headers_token = call_headers.set(headers) if identity.mode != "none" else None
        caller_token = current_caller.set(ctx)
        endpoint.callers.append(ctx)
        endpoint.in_flight += 1
        verdict: bool | None = None
        outcome = "cancelled"
        try:
            if own_limit:
                with anyio.move_on_after(limit):
                    result = await send(link, meta)
                    if not _ran_out_of_time(result):
                        verdict, outcome = True, _outcome(result)
                        return result
                # The attempt limit passed here, or the upstream stopped at the same limit (we sent
                # it as its deadline) and said so first: either way this attempt timed out.
                verdict, outcome = False, "timeout"
                raise _Retryable(self._timed_out(what, attempt_limit))
            result = await send(link, meta)
            if _ran_out_of_time(result):
                # The upstream stopped at the deadline we passed it and said so before our own timer
                # fired: the same timeout (for the breaker and the metric) as if it had fired first.
                verdict, outcome = False, "timeout"
                if own_timeout is not None:
                    raise self._timed_out(what, own_timeout)
                return result  # the caller's deadline was the bound: deadline_exceeded is the answer
            verdict, outcome = True, _outcome(result)
            return result
        except MCPError as exc:
            if _deadline_error(exc):  # the same, answered as a JSON-RPC error (a prompt, a resource read)
                verdict, outcome = False, "timeout"
                if own_limit:
                    raise _Retryable(self._timed_out(what, attempt_limit)) from None
                if own_timeout is not None:
                    raise self._timed_out(what, own_timeout) from None
                raise self._translate(exc) from None
            if is_transport_error(exc) or _session_lost(exc):
                verdict, outcome = False, "unavailable"
                endpoint.mark_broken()  # a restarted upstream forgot our session: reconnect
                raise _Retryable(self._lost(what)) from None
            if (reason := _stand_in(exc)) is not None:
                verdict, outcome = False, "invalid"
                logger.info("upstream %s: %s got no valid answer: %s", endpoint.name, what, exc.message[:200])
                raise _Retryable(
                    UpstreamError(f"upstream {self.name!r} sent no valid answer to {what}", details={"reason": reason})
                ) from None
            if _proxy_failure(exc):  # a proxy in front answered 502/503/504: the replica is not reachable
                verdict, outcome = False, "unavailable"
                raise _Retryable(self._translate(exc)) from None
            verdict, outcome = True, "error"
            if passes_through(exc):  # the caller's to act on (see mcplane.gateway.forward)
                raise
            raise self._translate(exc) from None
        except LinkOutcome as done:
            verdict, outcome = not done.replica_failed, done.outcome
            if done.replica_failed:
                raise _Retryable(done.error) from None
            raise done.error from None
        except anyio.get_cancelled_exc_class():
            left = ctx.remaining()
            if left is not None and left <= _DEADLINE_SLACK:  # the deadline cut it short: too slow is failing
                verdict, outcome = False, "timeout"
            raise
        except Exception as exc:
            if not is_transport_error(exc):
                if verdict is None:  # not the attempt's own timeout (raised above)
                    outcome = "error"
                raise
            verdict, outcome = False, "unavailable"
            endpoint.mark_broken()
            logger.info("upstream %s: %s failed: %r", endpoint.name, what, unwrap(exc))
            raise _Retryable(self._lost(what)) from None
        finally:
            endpoint.in_flight -= 1
            _forget(endpoint.callers, ctx)
            current_caller.reset(caller_token)
            if headers_token is not None:
                call_headers.reset(headers_token)
            if (metrics := self.metrics) is not None:
                self._count(metrics, endpoint.label, outcome)
            if verdict is True:
                breaker.success()
            elif verdict is False:
                breaker.failure()
            else:
                breaker.release()

    def _timed_out(self, what: str, seconds: float) -> Timeout:
        return Timeout(f"upstream {self.name!r} did not answer {what} within {seconds:g} s")

    def _lost(self, what: str) -> MCPlaneError:
        return DependencyUnavailable(
            f"upstream {self.name!r} is unavailable ({what} failed)", details={"dependency": self.name}
        )

    def _translate(self, exc: MCPError) -> MCPlaneError:
        """A JSON-RPC error the upstream answered: its mcplane error if it has one, else ``upstream_error``."""
        typed = from_mcp_error(exc)
        if typed is not None:
            return typed
        return UpstreamError(
            f"upstream {self.name!r} answered an error",
            details={"upstream_code": exc.code, "upstream_message": exc.message[:200]},
        )

    def __repr__(self) -> str:
        return f"Upstream({self.name!r}, endpoints={len(self.endpoints)}, healthy={self.healthy()})"


# What the SDK's HTTP transport puts in place of an answer that never came as JSON-RPC (its code
# and message start), by the ``reason`` the gateway's ``upstream_error`` gives: a body that is not
# JSON-RPC, an HTTP error status without a JSON-RPC error in its body, a wrong content type.
_STAND_INS: tuple[tuple[int, str, str], ...] = (
    (PARSE_ERROR, "Failed to parse", "invalid_response"),
    (INTERNAL_ERROR, "Server returned an error response", "http_error"),
    (INVALID_REQUEST, "Unexpected content type", "invalid_response"),
    (INVALID_REQUEST, "server answered a request with 202", "invalid_response"),
)


def _forget(callers: list[Context], ctx: Context) -> None:
    """Take ``ctx`` itself out of an endpoint's callers in flight. Not ``list.remove``: contexts are
    pydantic models, and two callers' contexts compare equal field by field (mcplane's own state is
    in slots pydantic does not compare), so ``remove`` would take out the first *equal* one, another
    caller's, and compare each one before it at a pydantic ``__eq__`` apiece."""
    if callers and callers[-1] is ctx:  # the latest call to start (c=1: the only one)
        callers.pop()
        return
    for index, held in enumerate(callers):
        if held is ctx:
            del callers[index]
            return


def _stand_in(exc: MCPError) -> str | None:
    """The reason when ``exc`` is the transport's stand-in for a garbled answer (a replica failure)."""
    if exc.data is not None:
        return None
    for code, start, reason in _STAND_INS:
        if exc.code == code and exc.message.startswith(start):
            return reason
    return None


def _proxy_failure(exc: MCPError) -> bool:
    """``exc`` is the client transport's stand-in for a proxy's 502/503/504 page (``dependency_unavailable``
    with ``details.reason`` ``gateway_error``, see :mod:`mcplane.client`), not an upstream's answer."""
    data: Any = exc.data
    if not isinstance(data, dict) or data.get("code") != "dependency_unavailable":
        return False
    details: Any = data.get("details")
    return isinstance(details, dict) and details.get("reason") == "gateway_error"


def _session_lost(exc: MCPError) -> bool:
    """The upstream no longer knows the connection's 2025-11-25 session (it restarted, or expired it):
    the SDK's stand-in for a bare 404, or a server's own "Session not found" error."""
    return exc.message.strip().lower() in ("session terminated", "session not found")


def _deadline_error(exc: MCPError) -> bool:
    """``exc`` is an upstream's JSON-RPC ``deadline_exceeded`` error."""
    data: Any = exc.data
    return isinstance(data, dict) and data.get("code") == "deadline_exceeded"


def _ran_out_of_time(result: Any) -> bool:
    """The upstream answered ``deadline_exceeded``: the budget the gateway gave it ran out."""
    if not isinstance(result, CallToolResult) or not result.is_error:
        return False
    error = error_object_of(result)
    return error is not None and error.get("code") == "deadline_exceeded"


def _outcome(result: Any) -> str:
    return "tool_error" if isinstance(result, CallToolResult) and result.is_error else "ok"


def _changed_kinds(old: Catalog, new: Catalog) -> set[str]:
    kinds: set[str] = set()
    if old.tools != new.tools:
        kinds.add("tools")
    if old.resources != new.resources or old.templates != new.templates:
        kinds.add("resources")
    if old.prompts != new.prompts:
        kinds.add("prompts")
    return kinds


async def _all(list_page: Callable[..., Awaitable[Any]], attribute: str) -> list[Any]:
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(_PAGE_CAP):
        page = await list_page(cursor=cursor)
        items.extend(getattr(page, attribute))
        cursor = page.next_cursor
        if cursor is None:
            break
    return items

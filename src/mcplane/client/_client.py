"""The agent-side client: the official SDK client plus deadlines, retries, a budget, trace
context and typed errors."""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from enum import Enum
from functools import partial
from types import TracebackType
from typing import Any

import anyio
import httpx2
from anyio.abc import TaskGroup
from mcp import Client as SDKClient
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, ListToolsResult, Tool
from tenacity import RetryCallState

from mcplane.client._budget import Budget, estimate_tokens
from mcplane.client._connection import Connection, Endpoint, target_factory, tls_for
from mcplane.client._deadline import Step, call_deadline
from mcplane.client._deadline import step as deadline_step
from mcplane.client._errors import from_mcp_error, from_result, is_transport_error, stamp, tls_failure, unwrap
from mcplane.client._retry import Failure, RetryPolicy, run_with_retries
from mcplane.context import TIMEOUT_META_KEY
from mcplane.errors import DeadlineExceeded, MCPlaneError
from mcplane.tls import PEMSource

__all__ = ["DEFAULT", "Client"]

logger = logging.getLogger("mcplane.client")

_LIST_PAGE_CAP = 100


class _Default(Enum):
    DEFAULT = "DEFAULT"


DEFAULT = _Default.DEFAULT
"""``timeout=DEFAULT``: the client's default timeout (``None`` means no timeout at all)."""


class Client:
    """An MCP client for agents, over Streamable HTTP, WebSocket or stdio.

    ::

        async with Client("https://tools.example.com/mcp", budget=Budget(tokens=10_000)) as client:
            async with client.step(deadline=2.0):
                result = await client.call_tool("search", {"q": "invoices"})

    - **Deadlines.** Each call ends by its deadline: ``timeout=`` (default: the client's
      ``timeout``), tightened by an open :meth:`step`. The time left travels to the server in
      ``_meta["mcplane/timeout_ms"]`` and bounds the wait here; a call not answered in time
      raises :class:`~mcplane.DeadlineExceeded`.
    - **Retries** (``retry=RetryPolicy(...)``; ``None`` never retries) only for tools the server
      lists as ``readOnlyHint`` or ``idempotentHint`` (learned from ``tools/list`` at the first
      failure worth retrying) or named in ``retryable_tools``, and only for failures marked
      ``retryable`` by the server and transport failures. ``retry_after_ms`` is honoured; no
      wait runs past the deadline.
    - **Budget.** With ``budget=Budget(tokens=...)`` a call whose arguments would overspend is
      refused with :class:`~mcplane.BudgetExceeded` before it is sent (see :class:`Budget`).
    - **Trace context.** ``traceparent``/``tracestate`` of the active OpenTelemetry span go into
      ``_meta``: the SDK's dispatcher injects them into every request (SEP-414), so this client
      adds nothing of its own (a ``traceparent`` passed in ``meta=`` is replaced by the SDK's).
    - **Typed errors.** Unless ``raise_on_error=False``, an error result raises the
      :mod:`mcplane.errors` class of its code (or :class:`ToolFailed`); a JSON-RPC error with an
      mcplane error object does too (other JSON-RPC errors stay the SDK's ``MCPError``).

    - **TLS.** ``https://`` and ``wss://`` servers are verified against the system's CAs, or
      only ``ca=`` (a CA bundle: a path or the PEM text); ``cert=``/``key=`` present a client
      certificate (mTLS); ``verify=False`` checks nothing (local experiments only); ``tls=``
      takes a ready ``ssl.SSLContext`` instead. Contexts come from
      :func:`mcplane.tls.client_context`: one per distinct setting, shared by every connection.
      A certificate that is not trusted, or a handshake the server refuses, raises
      :class:`~mcplane.DependencyUnavailable` (``retryable`` false, ``details.reason``
      ``tls_untrusted_server`` or ``tls_handshake_failed``).

    A broken connection is reopened by the next call (or retry). ``clock`` and ``sleep`` are
    injectable so tests need not wait.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        timeout: float | None = 30.0,
        retry: RetryPolicy | None = RetryPolicy(),
        retryable_tools: Iterable[str] = (),
        budget: Budget | None = None,
        raise_on_error: bool = True,
        headers: Mapping[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
        ca: PEMSource | None = None,
        cert: PEMSource | None = None,
        key: PEMSource | None = None,
        verify: bool = True,
        mode: str = "auto",
        auth: httpx2.Auth | None = None,
        connect_timeout: float | None = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = anyio.sleep,
        **sdk_options: Any,
    ) -> None:
        self.tls = tls_for(endpoint, tls, ca=ca, cert=cert, key=key, verify=verify)
        """The TLS context of ``https://``/``wss://`` connections (shared, see :func:`mcplane.tls.client_context`)."""
        self._target = target_factory(
            endpoint, headers=dict(headers) if headers is not None else None, tls=self.tls, auth=auth
        )
        self.timeout = timeout
        self.retry = retry
        self.retryable_tools = frozenset(retryable_tools)
        self.budget = budget
        self.raise_on_error = raise_on_error
        self.connect_timeout = connect_timeout
        self.clock = clock
        self.sleep = sleep
        self._sdk_options: dict[str, Any] = {"mode": mode, **sdk_options}
        self._connection: Connection | None = None
        self._opened: list[Connection] = []
        self._task_group: TaskGroup | None = None
        self._stack: AsyncExitStack | None = None
        self._lock = anyio.Lock()
        self._tools: dict[str, Tool] | None = None

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Client:
        if self._stack is not None:
            raise RuntimeError("this Client is already open")
        stack = AsyncExitStack()
        try:
            self._task_group = await stack.enter_async_context(anyio.create_task_group())
            self._stack = stack
            with anyio.fail_after(self.connect_timeout):
                await self._connect()
        except BaseException:
            self._stack = None
            await self._close_connection(all_of_them=True)
            await stack.aclose()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        stack, self._stack = self._stack, None
        await self._close_connection(all_of_them=True)
        if stack is None:
            return
        if exc is None or isinstance(exc, Exception):
            # The body's own failure is not the task group's: leaving it clean lets the exception
            # propagate as raised (a task group would wrap it in an ExceptionGroup).
            await stack.aclose()
        else:  # cancellation, KeyboardInterrupt: let the task group see it
            await stack.__aexit__(exc_type, exc, tb)

    async def _close_connection(self, *, all_of_them: bool = False) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if all_of_them:  # also any whose opening a deadline interrupted
            for connection in self._opened:
                connection.close()
            self._opened.clear()

    async def _connect(self) -> Connection:
        assert self._task_group is not None
        connection = Connection(self._target(), self._sdk_options)
        self._opened = [c for c in self._opened if not c.dead]
        self._opened.append(connection)
        failure = await self._task_group.start(connection.run)
        if failure is not None:
            raise failure
        self._connection = connection
        return connection

    async def _live(self) -> tuple[Connection, SDKClient]:
        """The live connection, reopened (within ``connect_timeout``) when the last one broke."""
        connection = self._connection
        if connection is None or connection.dead or connection.sdk is None:
            if self._stack is None:
                raise RuntimeError("use the Client in `async with Client(...) as client:`")
            async with self._lock:
                connection = self._connection
                if connection is None or connection.dead or connection.sdk is None:
                    await self._close_connection()
                    with anyio.fail_after(self.connect_timeout):
                        connection = await self._connect()
        assert connection.sdk is not None
        return connection, connection.sdk

    @property
    def sdk(self) -> SDKClient:
        """The official SDK client of the current connection, for everything not wrapped here."""
        connection = self._connection
        if connection is None or connection.sdk is None:
            raise RuntimeError("the Client is not connected")
        return connection.sdk

    # ------------------------------------------------------------------ deadlines
    def step(self, deadline: float) -> AbstractAsyncContextManager[Step]:
        """``async with client.step(deadline=2.0):`` bounds every call inside it to 2 seconds in all."""
        return deadline_step(deadline, self.clock)

    def _deadline(self, timeout: float | _Default | None) -> float | None:
        return call_deadline(self.timeout if timeout is DEFAULT else timeout, self.clock)

    def _remaining(self, deadline: float | None, what: str) -> float | None:
        if deadline is None:
            return None
        remaining = deadline - self.clock()
        if remaining <= 0:
            raise stamp(DeadlineExceeded(f"the deadline passed before {what} could be sent"), correlation_id=None)
        return remaining

    # ------------------------------------------------------------------ tools
    async def list_tools(self, *, timeout: float | _Default | None = DEFAULT) -> list[Tool]:  # noqa: ASYNC109 - travels to the server
        """Every tool the server lists (all pages); their annotations decide what may be retried."""
        deadline = self._deadline(timeout)
        tools: list[Tool] = []
        cursor: str | None = None
        for _ in range(_LIST_PAGE_CAP):

            async def page_of(cursor: str | None) -> ListToolsResult:
                _, sdk = await self._live()
                return await sdk.list_tools(cursor=cursor)

            page: ListToolsResult = await self._bounded(partial(page_of, cursor), deadline, "tools/list")
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        self._tools = {tool.name: tool for tool in tools}
        return tools

    async def _may_retry(self, name: str, retry: bool | None, deadline: float | None) -> bool:
        """Whether the caller or the tool's annotations allow calling ``name`` again."""
        if retry is not None:
            return retry
        if name in self.retryable_tools:
            return True
        if self._tools is None or name not in self._tools:
            try:
                await self.list_tools(timeout=None if deadline is None else deadline - self.clock())
            except Exception as exc:  # not knowing the annotations means not retrying: the safe side
                logger.debug("tools/list failed; %r is not retried: %r", name, unwrap(exc))
                return False
        tool = (self._tools or {}).get(name)
        hints = tool.annotations if tool is not None else None
        return hints is not None and bool(hints.read_only_hint or hints.idempotent_hint)

    async def call_tool(
        self,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        timeout: float | _Default | None = DEFAULT,  # noqa: ASYNC109 - a deadline that travels to the server
        retry: bool | None = None,
        raise_on_error: bool | None = None,
        meta: Mapping[str, Any] | None = None,
        progress_callback: ProgressFnT | None = None,
    ) -> CallToolResult:
        """Call a tool; see the class for deadlines, retries, budget and errors.

        ``retry=True``/``False`` overrides what the annotations say for this call;
        ``raise_on_error=False`` returns an error result instead of raising it.
        """
        args = dict(arguments) if arguments is not None else {}
        deadline = self._deadline(timeout)
        raising = self.raise_on_error if raise_on_error is None else raise_on_error
        reserved = self.budget.reserve(estimate_tokens(args), tool=name) if self.budget is not None else 0
        extra = dict(meta or {})
        retrying = self.retry is not None and self.retry.attempts > 1 and retry is not False

        async def attempt() -> CallToolResult:
            remaining = self._remaining(deadline, repr(name))
            outgoing = dict(extra)
            if remaining is not None:
                outgoing[TIMEOUT_META_KEY] = int(remaining * 1000)
            used: list[Connection] = []

            async def send() -> CallToolResult:
                connection, sdk = await self._live()
                used.append(connection)
                return await sdk.call_tool(name, args, progress_callback=progress_callback, meta=outgoing)  # pyright: ignore[reportArgumentType]

            may_retry = retry if retrying else False
            try:
                result: CallToolResult = await self._bounded(send, deadline, repr(name))
            except DeadlineExceeded as exc:
                raise Failure(exc) from None
            except Exception as exc:
                if used and is_transport_error(exc):
                    used[0].close()  # broken: the next attempt (or call) opens a new connection
                raise await self._failure(exc, None, name, may_retry, deadline) from None
            if result.is_error:
                raise await self._failure(from_result(result), result, name, may_retry, deadline)
            return result

        try:
            if retrying:
                assert self.retry is not None
                result = await run_with_retries(
                    attempt,
                    self.retry,
                    deadline=deadline,
                    clock=self.clock,
                    sleep=self.sleep,
                    before_sleep=lambda state: _log_retry(name, state),
                )
            else:
                result = await attempt()
        except Failure as failure:
            if failure.result is None or raising:
                if failure.result is not None and self.budget is not None:
                    self.budget.settle(reserved, failure.result)
                raise failure.error from failure.error.__cause__
            result = failure.result
        if self.budget is not None:
            self.budget.settle(reserved, result)
        return result

    # ------------------------------------------------------------------ internals
    async def _bounded(self, send: Callable[[], Awaitable[Any]], deadline: float | None, what: str) -> Any:
        remaining = self._remaining(deadline, what)
        if remaining is None:
            return await send()
        with anyio.move_on_after(remaining):
            return await send()
        raise stamp(DeadlineExceeded(f"no answer to {what} before the deadline"), correlation_id=None)

    async def _failure(
        self, exc: Exception, result: CallToolResult | None, name: str, retry: bool | None, deadline: float | None
    ) -> Failure:
        """What a failed attempt means: the error the caller sees, and whether to try again."""
        error: BaseException = exc
        if isinstance(exc, MCPError) and (typed := from_mcp_error(exc)) is not None:
            typed.__cause__ = exc
            error = typed
        elif (failed_tls := tls_failure(exc)) is not None:
            error = failed_tls  # a new connection's handshake failed: retrying fails the same way
        elif is_transport_error(exc):
            error = unwrap(exc)
        worth = error.retryable if isinstance(error, MCPlaneError) else is_transport_error(error)
        retryable = worth and retry is not False and await self._may_retry(name, retry, deadline)
        return Failure(error, result=result, retryable=retryable)


def _log_retry(name: str, state: RetryCallState) -> None:
    outcome = state.outcome
    failure = outcome.exception() if outcome is not None else None
    error = failure.error if isinstance(failure, Failure) else failure
    logger.debug(
        "retrying %r in %.3f s after attempt %d failed: %r", name, state.upcoming_sleep, state.attempt_number, error
    )

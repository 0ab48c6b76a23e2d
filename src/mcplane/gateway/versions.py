"""Tool versions, canary routing and automatic rollback.

A *versioned tool* is one exposed name (``users__fetch_user``) served by several versions, each
a tool of some upstream (``v1`` → ``users_v1``'s ``fetch_user``, ``v2`` → ``users_v2``'s). It is
listed once, with the default version's schema and annotations; with ``expose_versions`` (the
default) every version also stays listed and callable under its own namespaced name.

Which version serves a call:

1. a **pin**: ``_meta["mcplane/version"]`` of the request, else the HTTP header
   ``Mcplane-Tool-Version``; a version the tool does not have is ``not_found`` (never a silent
   fallback), a pin that is not a string is ``invalid_arguments``;
2. otherwise the **canary**, with probability ``canary.weight`` (a random draw per call, from an
   injectable source);
3. otherwise the **default** (stable) version.

The answer names the version that served it in its ``_meta["mcplane/version"]``.

**Rollback.** Every call served by the canary version (pinned ones included) is an outcome in a
sliding window of ``rollback.window`` seconds on an injectable clock. A *failure* is what the
upstream or the way to it produced: an exception (``timeout``, ``dependency_unavailable``,
``circuit_open``, ``upstream_error``, ``internal_error``, a cut by the caller's deadline, ...) or an
``isError`` result whose mcplane code is not a caller's mistake — including an ``isError``
result with no mcplane code at all (a plain server's crash report). Caller mistakes
(``invalid_arguments``, ``unauthenticated``, ``forbidden``, ``not_found``, ``rate_limited``,
``budget_exceeded``) and calls the client cancelled count as nothing (neither calls nor
failures). Once the window holds at
least ``min_calls`` calls and at least ``error_rate`` of them failed, the canary's weight drops to
0: unpinned traffic goes to the default version, one warning event ``canary_rollback`` is
logged and ``mcplane_canary_rollbacks_total{tool}`` grows by one; ``mcplane_canary_weight{tool}``
shows the weight in force. The rollback holds until the tool's ``versions`` entry changes (a
reload with an edited entry — a new weight, say — starts the canary afresh) or the gateway restarts.
State is per process.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from mcp_types import CallToolResult

from mcplane.errors import InvalidArguments, MCPlaneError, NotFound, error_object_of
from mcplane.gateway.config import GatewayConfig, VersionedToolConfig
from mcplane.observability.logs import EVENT_KEY

if TYPE_CHECKING:
    from mcplane.context import Context
    from mcplane.observability.metrics import Metrics

__all__ = [
    "CALLER_CODES",
    "VERSION_HEADER",
    "VERSION_META_KEY",
    "CanaryWindow",
    "Route",
    "VersionRouter",
    "VersionState",
    "exception_failed",
    "result_failed",
]

logger = logging.getLogger("mcplane.gateway")

VERSION_META_KEY = "mcplane/version"
"""``_meta`` key: in a request, the version pinned; in an answer, the version that served."""
VERSION_HEADER = "mcplane-tool-version"
"""HTTP header (lower-case) pinning a version when the request's ``_meta`` does not."""
CALLER_CODES = frozenset(
    {"invalid_arguments", "unauthenticated", "forbidden", "not_found", "rate_limited", "budget_exceeded"}
)
"""Error codes that say the caller got something wrong: never held against a canary."""


def result_failed(result: Any) -> bool | None:
    """A tool result as a canary outcome: ``True`` failed, ``False`` served, ``None`` the caller's mistake."""
    if not isinstance(result, CallToolResult) or not result.is_error:
        return False
    error = error_object_of(result)
    code: Any = error.get("code") if error is not None else None
    return None if code in CALLER_CODES else True


def exception_failed(exc: BaseException) -> bool | None:
    """An exception from a version's call as a canary outcome (``None``: the caller's mistake)."""
    if isinstance(exc, MCPlaneError) and exc.code in CALLER_CODES:
        return None
    return True


class CanaryWindow:
    """Outcomes of the last ``window`` seconds: calls and failures, kept as counts."""

    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self._outcomes: deque[tuple[float, bool]] = deque()
        self._failures = 0

    def add(self, failed: bool) -> None:
        self._outcomes.append((self.clock(), failed))
        self._failures += failed
        self._prune()

    def counts(self) -> tuple[int, int]:
        """``(calls, failures)`` within the window now."""
        self._prune()
        return len(self._outcomes), self._failures

    def _prune(self) -> None:
        horizon = self.clock() - self.window
        outcomes = self._outcomes
        while outcomes and outcomes[0][0] < horizon:
            self._failures -= outcomes.popleft()[1]


@dataclass(frozen=True, slots=True)
class Route:
    """Where one call of a versioned tool goes."""

    tool: str
    """The exposed name."""
    version: str
    target: str
    """The namespaced name of the version's upstream tool (``users_v2__fetch_user``)."""
    pinned: bool = False


class VersionState:
    """One versioned tool: its config, its versions' targets, its canary window and rollback."""

    def __init__(
        self,
        name: str,
        config: VersionedToolConfig,
        targets: Mapping[str, str],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.config = config
        self.targets = dict(targets)
        """Version → namespaced target name."""
        self.rolled_back = False
        rollback = config.rollback
        self.window = CanaryWindow(rollback.window if rollback is not None else 0.0, clock)

    @property
    def canary(self) -> str | None:
        return self.config.canary.version if self.config.canary is not None else None

    @property
    def weight(self) -> float:
        """The canary's share of unpinned calls in force now (0 after a rollback)."""
        if self.config.canary is None or self.rolled_back:
            return 0.0
        return self.config.canary.weight

    def choose(self, pin: str | None, rand: Callable[[], float]) -> Route:
        if pin is not None:
            target = self.targets.get(pin)
            if target is None:
                raise NotFound(
                    f"tool {self.name!r} has no version {pin!r}",
                    details={"tool": self.name, "version": pin, "versions": sorted(self.targets)},
                )
            return Route(self.name, pin, target, pinned=True)
        weight = self.weight
        version = self.canary if weight > 0 and rand() < weight else self.config.default
        assert version is not None
        return Route(self.name, version, self.targets[version])


class VersionRouter:
    """Every versioned tool of a gateway: routes calls, records canary outcomes, rolls back."""

    def __init__(
        self,
        config: GatewayConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
        metrics: Metrics | None = None,
    ) -> None:
        self.clock = clock
        self.rand = rand
        self.metrics = metrics
        self.tools: dict[str, VersionState] = {}
        if config is not None:
            for name, entry in config.versions.items():
                targets = {version: config.target_of(name, version) for version in entry.versions}
                self.tools[name] = VersionState(name, entry, targets, clock=clock)

    def __contains__(self, name: object) -> bool:
        return name in self.tools

    def reconfigured(self, config: GatewayConfig) -> VersionRouter:
        """A router for ``config`` that keeps the state (window, rollback) of every unchanged entry."""
        fresh = VersionRouter(config, clock=self.clock, rand=self.rand, metrics=self.metrics)
        for name, state in fresh.tools.items():
            old = self.tools.get(name)
            if old is not None and old.config == state.config and old.targets == state.targets:
                fresh.tools[name] = old
        if self.metrics is not None:  # a canary that is gone sends nothing
            for name, state in self.tools.items():
                if state.config.canary is not None and (name not in fresh.tools or fresh.tools[name].canary is None):
                    self.metrics.canary_weight.labels(tool=name).set(0)
        fresh.publish()
        return fresh

    def publish(self) -> None:
        """Set ``mcplane_canary_weight`` for every tool with a canary."""
        if self.metrics is None:
            return
        for name, state in self.tools.items():
            if state.config.canary is not None:
                self.metrics.canary_weight.labels(tool=name).set(state.weight)

    def route(self, name: str, ctx: Context) -> Route:
        """The version serving this call of ``name`` (a versioned tool)."""
        return self.tools[name].choose(_pin(ctx), self.rand)

    def record(self, route: Route, *, failed: bool | None) -> None:
        """One outcome of a call routed by :meth:`route`; rolls the canary back when it must.

        ``failed``: ``None`` for an outcome that says nothing about the version (not counted)."""
        state = self.tools.get(route.tool)
        rollback = state.config.rollback if state is not None else None
        if failed is None or state is None or rollback is None or state.rolled_back or route.version != state.canary:
            return
        state.window.add(failed)
        calls, failures = state.window.counts()
        if calls < rollback.min_calls or failures / calls < rollback.error_rate:
            return
        state.rolled_back = True
        event = {
            "event": "canary_rollback",
            "tool": route.tool,
            "canary": route.version,
            "stable": state.config.default,
            "calls": calls,
            "failures": failures,
            "error_rate": round(failures / calls, 4),
            "threshold": rollback.error_rate,
            "window_s": rollback.window,
        }
        logger.warning(
            "canary rollback: %s version %s failed %d of %d calls in %g s; all traffic goes to %s",
            route.tool,
            route.version,
            failures,
            calls,
            rollback.window,
            state.config.default,
            extra={EVENT_KEY: event},
        )
        if self.metrics is not None:
            self.metrics.canary_rollbacks.labels(tool=route.tool).inc()
            self.metrics.canary_weight.labels(tool=route.tool).set(0)

    async def call(self, route: Route, ctx: Context, send: Callable[[], Any]) -> Any:
        """Await ``send()`` (the call of ``route.target``), record its outcome, tag the answer."""
        try:
            result = await send()
        except anyio.get_cancelled_exc_class():
            if ctx.remaining() == 0:  # cut by the caller's deadline: the version was too slow
                self.record(route, failed=True)
            raise
        except Exception as exc:
            self.record(route, failed=exception_failed(exc))
            raise
        self.record(route, failed=result_failed(result))
        if isinstance(result, CallToolResult):
            result = result.model_copy(update={"meta": {**(result.meta or {}), VERSION_META_KEY: route.version}})
        return result


def _pin(ctx: Context) -> str | None:
    pin: Any = ctx.request_meta.get(VERSION_META_KEY)
    if pin is None:
        headers = ctx.headers
        pin = headers.get(VERSION_HEADER) if headers is not None else None
    if pin is not None and not isinstance(pin, str):
        raise InvalidArguments(f"_meta {VERSION_META_KEY!r} must be a version name (a string)")
    return pin

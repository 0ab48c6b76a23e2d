"""The ``cache`` slot: successful tool results, replayed for equal arguments until their TTL ends.

Only tool calls are cached, and only a ``CallToolResult`` whose ``isError`` is false: errors,
``InputRequiredResult`` (a multi-round-trip request) and exceptions always go through.

Read from ``call.policy`` (:class:`~mcplane.tool_policy.ToolPolicy`) and ``call.source``:

``cache_ttl``
    Seconds (a number or a duration such as ``"30s"``, ``"5m"``) to keep the tool's results.
    Declaring it turns caching on for the tool; ``0`` (or ``False``/``None`` in the keyword form)
    turns it off.
``source.annotations``
    The tool's ``mcp_types.ToolAnnotations``. When :attr:`CacheOptions.enabled` is set, a tool
    with ``readOnlyHint`` and no ``cache_ttl`` is cached for :attr:`CacheOptions.default_ttl`.
``cache_scope``
    ``"private"`` (default): one entry per caller (tenant and subject). ``"public"``: one entry
    shared by every caller; only for tools whose answer does not depend on who asks.

The key is ``tool:<name>:<sha256>`` of the canonical JSON (sorted keys, no whitespace) of the
tool name, the arguments and the scope, so argument values never appear in a key name.

A backend failure on read is a miss when ``fail_open`` (the default: the tool runs, a warning
is logged, the result is not stored); otherwise the call fails with ``dependency_unavailable``.
A failure to store a fresh result never fails the call: the result is already there.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import orjson
from mcp_types import CallToolResult
from pydantic import ValidationError

from mcplane.backends.cache import Cache
from mcplane.errors import ConfigError, DependencyUnavailable
from mcplane.pipeline import Call, CallNext
from mcplane.tool_policy import ToolPolicy, ToolSource

__all__ = ["CacheMiddleware", "CacheOptions", "cache_key", "cache_ttl", "canonical_json"]

logger = logging.getLogger("mcplane.cache")


@dataclass(frozen=True, slots=True)
class CacheOptions:
    enabled: bool = False
    """Cache ``readOnlyHint`` tools that declare no ``cache_ttl`` (for :attr:`default_ttl`)."""
    default_ttl: float = 60.0
    max_bytes: int = 1_048_576
    """Results larger than this (serialized) are not stored."""
    fail_open: bool = True
    """On an unreachable backend, run the tool uncached (``True``) or answer ``dependency_unavailable``."""

    def __post_init__(self) -> None:
        if not self.default_ttl > 0:
            raise ConfigError(f"cache default_ttl must be positive, got {self.default_ttl!r}")


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace: equal values give equal bytes. Raises ``TypeError`` if not JSON."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def cache_ttl(policy: ToolPolicy, source: ToolSource, options: CacheOptions) -> float | None:
    """Seconds to cache a tool's results under ``policy``, or ``None`` for no caching."""
    if policy.cache_ttl is not None:
        return policy.cache_ttl or None  # 0: caching off for the tool
    annotations = source.annotations
    if options.enabled and annotations is not None and getattr(annotations, "read_only_hint", None):
        return options.default_ttl
    return None


def cache_key(call: Call) -> str | None:
    """The entry key for ``call``, or ``None`` when its arguments are not JSON (never cached)."""
    scope = call.policy.cache_scope or "private"
    if scope not in ("private", "public"):
        raise ConfigError(f"cache_scope: expected 'private' or 'public', got {scope!r}")
    principal = call.context.principal
    who = None if scope == "public" else [principal.tenant, principal.subject]
    try:
        material = canonical_json({"tool": call.name, "arguments": dict(call.arguments), "principal": who})
    except TypeError:
        return None
    return f"tool:{call.name}:{hashlib.sha256(material).hexdigest()}"


class CacheMiddleware:
    def __init__(self, options: CacheOptions, backend: Cache) -> None:
        self.options = options
        self.backend = backend

    async def __call__(self, call: Call, call_next: CallNext) -> Any:
        if call.kind != "tool":
            return await call_next(call)
        ttl = cache_ttl(call.policy, call.source, self.options)
        key = None if ttl is None else cache_key(call)
        if ttl is None or key is None:
            return await call_next(call)
        try:
            stored = await self.backend.get(key)
        except DependencyUnavailable:
            if not self.options.fail_open:
                raise
            self._warn("read", call)
            return await call_next(call)
        if stored is not None:
            cached = _restore(stored)
            if cached is not None:
                return cached
        result = await call_next(call)
        if isinstance(result, CallToolResult) and not result.is_error:
            data = orjson.dumps(result.model_dump(by_alias=True, mode="json", exclude_none=True))
            if len(data) <= self.options.max_bytes:
                try:
                    await self.backend.set(key, data, ttl)
                except DependencyUnavailable:
                    self._warn("write", call)
        return result

    def _warn(self, what: str, call: Call) -> None:
        logger.warning(
            "cache %s failed (backend unavailable) for tool %r; running uncached (correlation_id=%s)",
            what,
            call.name,
            call.context.correlation_id,
        )


def _restore(stored: bytes) -> CallToolResult | None:
    """A cached result, or ``None`` for an entry that no longer parses (then it is a miss)."""
    try:
        return CallToolResult.model_validate(orjson.loads(stored))
    except (orjson.JSONDecodeError, ValidationError):
        logger.warning("ignoring a cache entry that does not parse as a CallToolResult; it will be replaced")
        return None

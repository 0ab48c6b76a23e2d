"""What a call of one tool is allowed to do (:class:`ToolPolicy`) and what the tool is (:class:`ToolSource`).

Both are frozen values, built once per tool (when it is registered, when a gateway catalog is
merged, when the file's ``tools:`` globs are applied) and read by every layer of every call, so
a layer reads a typed attribute instead of looking up a string key, and a typo in a key fails
when the policy is built, not silently at the first call.

The split matters: a *policy* is what the decorator and ``mcplane.yaml`` declare and an operator
may change (timeouts, limits, caching, access, cost, retries); a *source* is what the tool
itself is (its published input schema, its annotations, the upstream that serves it) and no
file overrides it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Literal, cast

from mcplane.errors import ConfigError
from mcplane.policy import parse_duration

if TYPE_CHECKING:
    from mcp_types import ToolAnnotations

    from mcplane.tasks.model import TaskPolicy

__all__ = ["EMPTY_POLICY", "EMPTY_SOURCE", "OFF", "ToolPolicy", "ToolSource"]

OFF = "off"
"""``rate_limit`` value that turns every limit off for the tool, the configured default included."""

CacheScope = Literal["private", "public"]


@dataclass(frozen=True, slots=True)
class ToolPolicy:
    """One tool's policy, the decorator's keywords overlaid by the file's ``tools:`` globs.

    ``None`` in a field means "not declared": the layer's configured default applies.
    """

    timeout: float | None = None
    """Seconds a call may run; ``None``: the plane's default timeout."""
    unbounded: bool = False
    """No timeout at all, not even the default: a call that may become a task is bounded by the
    task TTL instead. ``timeout``, when given, still applies."""
    rate_limit: str | tuple[str, ...] | None = None
    """``"100/minute"`` or several (all must hold); ``"off"`` or ``()``: no limit; ``None``: the default."""
    rate_limit_scope: str | tuple[str, ...] | None = None
    """``"principal"``, ``"global"``, ``"both"`` or several; ``None``: the rate-limit section's."""
    cache_ttl: float | None = None
    """Seconds to keep results; ``0``: never cached; ``None``: cached only if read-only and caching is on."""
    cache_scope: CacheScope | None = None
    """``"private"`` (one entry per caller, the default) or ``"public"`` (one for everyone)."""
    roles: tuple[str, ...] | None = None
    """Any one of these roles may call the tool (unless a configured rule says otherwise)."""
    scopes: tuple[str, ...] | None = None
    """Every one of these scopes is needed to call the tool (unless a configured rule says otherwise)."""
    cost: int | None = None
    """Budget units one call spends; ``None``: the budget section's default."""
    retryable: bool | None = None
    """A gateway may call the tool again after a failure although it is not read-only or idempotent."""
    task: TaskPolicy | None = None
    """How calls may run as tasks (``@plane.tool(task=...)``); ``None``: never."""

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ToolPolicy:
        """A policy from its keyword form (``{"timeout": "2s", "roles": ["ops"]}``).

        Durations are parsed, lists become tuples and ``rate_limit: None``/``False`` means off;
        an unknown key is a :class:`~mcplane.errors.ConfigError` naming it.
        """
        return EMPTY_POLICY.overlay(values)

    def overlay(self, values: Mapping[str, Any]) -> ToolPolicy:
        """This policy with ``values`` (keyword form, see :meth:`from_mapping`) written over it."""
        if not values:
            return self
        unknown = sorted(key for key in values if key not in _FIELDS)
        if unknown:
            known = ", ".join(sorted(_FIELDS))
            raise ConfigError(f"unknown tool policy key {unknown[0]!r}; the keys are {known}")
        changes: dict[str, Any] = {}
        for key, value in values.items():
            if key == "timeout" and value is None:
                changes["unbounded"] = True  # the keyword form's explicit ``timeout: None``
            changes[key] = _NORMALIZE.get(key, _keep)(key, value)
        return replace(self, **changes)

    def timeout_or(self, default: float | None) -> float | None:
        """The seconds that bound a call: the policy's timeout, else ``default`` (unless unbounded)."""
        if self.timeout is not None:
            return self.timeout
        return None if self.unbounded else default


EMPTY_POLICY = ToolPolicy()
"""The policy of a tool nothing was declared for."""

_FIELDS = frozenset(field.name for field in fields(ToolPolicy))


@dataclass(frozen=True, slots=True)
class ToolSource:
    """What a tool is, as its provider declares it: read by validation, caching and observability."""

    json_schema: Mapping[str, Any] | None = None
    """The published input schema, when it is not derived from a local function's parameters
    (a hand-written one, or an upstream tool's)."""
    hand_written_schema: bool = False
    """``@plane.tool(input_schema=...)``: the published schema was written by hand."""
    upstream: str | None = None
    """The upstream that serves the tool (gateway tools); ``None`` for a local function."""
    annotations: ToolAnnotations | None = None
    """The tool's annotations (``readOnlyHint``, ``idempotentHint``, ...)."""


EMPTY_SOURCE = ToolSource()
"""The source of a call nothing is known about (a resource, a prompt, an unknown tool)."""


def _keep(key: str, value: Any) -> Any:
    return value


def _duration(key: str, value: Any) -> float | None:
    return None if value is None else parse_duration(value, field=key)


def _ttl(key: str, value: Any) -> float | None:
    if (
        value is None
        or value is False
        or (isinstance(value, int | float) and not isinstance(value, bool) and value == 0)
    ):
        return 0.0  # caching off for the tool
    if isinstance(value, str) and value.strip().rstrip("mhs").strip() in ("0", "0.0"):
        return 0.0
    return parse_duration(value, field=key)


def _rate_limit(key: str, value: Any) -> str | tuple[str, ...] | None:
    if value is None or value is False:
        return OFF
    if isinstance(value, list | tuple):
        return tuple(str(item) for item in cast("Collection[Any]", value))
    return cast("str", value)


def _scope(key: str, value: Any) -> str | tuple[str, ...] | None:
    if isinstance(value, list | tuple):
        return tuple(str(item) for item in cast("Collection[Any]", value))
    return cast("str | None", value)


def _names(key: str, value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Collection):
        return tuple(str(item) for item in cast("Collection[Any]", value))
    raise TypeError(f"{key}: expected a role or scope name or a list of them, got {type(value).__name__}")


_NORMALIZE = {
    "timeout": _duration,
    "cache_ttl": _ttl,
    "rate_limit": _rate_limit,
    "rate_limit_scope": _scope,
    "roles": _names,
    "scopes": _names,
}

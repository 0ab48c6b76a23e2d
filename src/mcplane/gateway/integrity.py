"""Tool integrity: every upstream tool definition pinned by hash; a changed one is withheld.

The threat is the **rug pull**: an upstream that was reviewed and trusted changes a tool's
description or schema later (new instructions for the model, a new parameter that collects
secrets), and every gateway client picks the change up at its next ``tools/list``. The gateway
therefore serves a tool only while its definition hashes to its **pin**
(:func:`~mcplane.gateway.pins.definition_hash`, per upstream and original tool name):

* a pin comes from the lock file (``integrity.lock_file``, written by ``mcplane gateway lock``,
  read only) or, in ``mode: first_sight``, from the first definition this gateway sees;
  ``mode: lock`` refuses a tool the lock file does not name (reason ``unpinned``);
* a definition that differs from its pin is **quarantined** (``on_change: quarantine``, reason
  ``changed``): left out of ``tools/list``, a call answers ``tool_quarantined`` (not retryable,
  ``details``: tool, upstream, reason, the new hash's first 12 digits), one WARNING log line names
  upstream, tool, pinned and new hash, and ``mcplane_gateway_tool_quarantined_total{upstream,reason}``
  counts it (``mcplane_gateway_tools_quarantined{upstream}`` is the number withheld now);
  ``on_change: allow`` logs and counts the change and serves (and pins) the new definition;
* each new definition is scanned (:mod:`mcplane.gateway.injection`); every finding is logged and
  counted (``mcplane_gateway_tool_findings_total{upstream,kind}``); with ``scan.on_finding: block``
  a tool with findings is withheld too (reason ``injection``) unless its pin was reviewed (a lock
  file entry or an approval);
* :meth:`ToolIntegrity.approve` (``POST /integrity/approve``, ``mcplane gateway approve``) makes the
  current definition the pin, reviewed; the tool is served again and clients get
  ``notifications/tools/list_changed``.

**Where pins live.** First-sight pins and approvals go to the plane's state store
(``state.backend``: memory by default, Redis when configured), so replicas sharing a Redis agree:
a first-sight pin is written only if absent (the first replica's wins, the others adopt it), an
approval overwrites; each replica re-reads the pins of the tools it serves every
``shared_state.sync_interval``. Until that first write a replica serves what it saw first; a store
that cannot be reached is logged and the replica keeps the pins it holds.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import anyio

from mcplane.errors import MCPlaneError, ToolQuarantined
from mcplane.gateway.injection import Finding, scan
from mcplane.gateway.pins import definition_hash, definition_of, read_lock, short

if TYPE_CHECKING:
    from mcp_types import Tool

    from mcplane.backends.state import StateStore
    from mcplane.gateway.catalog import Merged
    from mcplane.gateway.config import IntegrityConfig
    from mcplane.gateway.versions import VersionRouter
    from mcplane.observability.metrics import Metrics

__all__ = ["PIN_TTL", "ApprovalRefused", "Pin", "ToolIntegrity", "Verdict"]

logger = logging.getLogger("mcplane.gateway.integrity")

Reason = Literal["changed", "unpinned", "injection"]
Key = tuple[str, str]
PIN_TTL = 10 * 365 * 86_400.0
"""A pin in the state store lives this long (the store needs a time to live; a pin should not expire)."""
_KEY_PREFIX = "integrity:pin:"
_SCAN_CACHE = 4096


@dataclass(frozen=True, slots=True)
class Pin:
    hash: str
    reviewed: bool = False
    """Set by a lock-file entry or an approval: findings of this definition were seen by a person."""

    def encode(self) -> bytes:
        return json.dumps({"hash": self.hash, "reviewed": self.reviewed}).encode()

    @staticmethod
    def decode(raw: bytes) -> Pin | None:
        try:
            body: Any = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(body, dict) or not isinstance(body.get("hash"), str):  # pyright: ignore[reportUnknownMemberType]
            return None
        return Pin(str(body["hash"]), bool(body.get("reviewed", False)))  # pyright: ignore[reportUnknownArgumentType, reportUnknownMemberType]


@dataclass(slots=True)
class Verdict:
    """One upstream tool as last seen: its hash, its pin, and why it is withheld (``None``: served)."""

    upstream: str
    tool: str
    exposed: str
    current: str
    pinned: str | None
    reason: Reason | None
    findings: list[Finding] = field(default_factory=lambda: [])

    def to_dict(self) -> dict[str, Any]:
        return {
            "upstream": self.upstream,
            "tool": self.tool,
            "exposed": self.exposed,
            "reason": self.reason,
            "pinned": self.pinned,
            "current": self.current,
            "findings": [finding.to_dict() for finding in self.findings],
        }


class ApprovalRefused(LookupError):
    """An approval that names no withheld tool, or a hash that is not the tool's current one
    (``current`` is then that hash's prefix)."""

    def __init__(self, message: str, current: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.current = current


class ToolIntegrity:
    """The pins of one gateway and the verdict on each upstream tool (see the module docs)."""

    def __init__(self, config: IntegrityConfig) -> None:
        self.config = config
        self.lock: dict[Key, str] = read_lock(config.lock_file) if config.lock_file else {}
        self.pins: dict[Key, Pin] = {}
        """First-sight pins and approvals: this replica's view of the state store."""
        self.verdicts: dict[Key, Verdict] = {}
        self.withheld: dict[str, Verdict] = {}
        """Exposed name → verdict, for the tools left out of the catalog."""
        self.store: StateStore | None = None
        self.metrics: Metrics | None = None
        self.on_change: Callable[[], None] | None = None
        """Rebuild the catalog (the provider's): pins changed outside a rebuild."""
        self.notify: Callable[[], Awaitable[None]] | None = None
        """Tell this replica's clients the tool list changed (after an approval here or adopted from the store)."""
        self._pending: dict[Key, bool] = {}
        """Pins to write to the store: key → overwrite (a change allowed) or only if absent (first sight)."""
        self._scans: dict[str, list[Finding]] = {}
        self._announced: set[tuple[Key, str, str]] = set()

    # ----------------------------------------------------------------- verdicts
    def pin_of(self, key: Key) -> Pin | None:
        pin = self.pins.get(key)
        if pin is not None:
            return pin
        locked = self.lock.get(key)
        return Pin(locked, reviewed=True) if locked is not None else None

    def apply(self, merged: Merged, versions: VersionRouter | None = None) -> None:
        """Judge every upstream tool of ``merged`` and take the withheld ones out of it."""
        withheld: dict[str, Verdict] = {}
        for exposed, (upstream, tool) in list(merged.tools.items()):
            verdict = self.judge(upstream.name, tool, exposed)
            if verdict.reason is not None:
                withheld[exposed] = verdict
                del merged.tools[exposed]
                merged.policies.pop(exposed, None)
        if withheld:
            merged.listed["tool"] = [tool for tool in merged.listed["tool"] if tool.name not in withheld]
            if versions is not None:
                self._withhold_versions(merged, versions, withheld)
        self.withheld = withheld
        self._gauge()

    def _withhold_versions(self, merged: Merged, versions: VersionRouter, withheld: dict[str, Verdict]) -> None:
        """A versioned tool listed as its default version is withheld with that version."""
        for name, state in versions.tools.items():
            target = state.targets[state.config.default]
            if target in withheld and name in merged.live_versions:
                merged.live_versions.discard(name)
                merged.policies.pop(name, None)
                withheld[name] = withheld[target]
        merged.listed["tool"] = [tool for tool in merged.listed["tool"] if tool.name not in withheld]

    def judge(self, upstream: str, tool: Tool, exposed: str) -> Verdict:
        key = (upstream, tool.name)
        current = definition_hash(tool)
        findings = self._scan(current, tool)
        pin = self.pin_of(key)
        reason: Reason | None = None
        if pin is None:
            if self.config.mode == "lock":
                reason = "unpinned"
            else:
                pin = self._pin(key, Pin(current), overwrite=False)
        elif pin.hash != current:
            if self.config.on_change == "quarantine":
                reason = "changed"
            else:
                self._announce(key, current, "allowed", pin.hash)
                pin = self._pin(key, Pin(current), overwrite=True)
        reviewed = pin is not None and pin.reviewed and pin.hash == current
        if reason is None and findings and self.config.scan.on_finding == "block" and not reviewed:
            reason = "injection"
        verdict = Verdict(upstream, tool.name, exposed, current, pin.hash if pin else None, reason, findings)
        self.verdicts[key] = verdict
        if findings:
            self._announce_findings(key, current, findings)
        if reason is not None:
            self._announce(key, current, reason, pin.hash if pin else None)
        return verdict

    def _pin(self, key: Key, pin: Pin, *, overwrite: bool) -> Pin:
        self.pins[key] = pin
        self._pending[key] = overwrite or self._pending.get(key, False)
        return pin

    def _scan(self, digest: str, tool: Tool) -> list[Finding]:
        found = self._scans.get(digest)
        if found is None:
            scan_config = self.config.scan
            found = scan(definition_of(tool), max_bytes=scan_config.max_bytes, max_depth=scan_config.max_depth)
            if len(self._scans) >= _SCAN_CACHE:
                self._scans.clear()
            self._scans[digest] = found
        return found

    def check(self, name: str) -> None:
        """Raise :class:`ToolQuarantined` when the exposed tool ``name`` is withheld."""
        verdict = self.withheld.get(name)
        if verdict is not None:
            raise ToolQuarantined(
                details={
                    "tool": name,
                    "upstream": verdict.upstream,
                    "reason": verdict.reason,
                    "hash": short(verdict.current),
                }
            )

    def quarantined(self) -> list[Verdict]:
        """The withheld upstream tools, in upstream then tool order."""
        unique = {(v.upstream, v.tool): v for v in self.withheld.values()}
        return [unique[key] for key in sorted(unique)]

    # ----------------------------------------------------------------- approval
    async def approve(self, upstream: str, tool: str, digest: str | None = None) -> Verdict:
        """Make the withheld tool's current definition its reviewed pin; it is served from now on.

        ``digest`` (the full hash or its 12-digit prefix), when given, must be the current one:
        an approval is of the definition the operator reviewed, not of whatever came since.
        """
        key = (upstream, tool)
        verdict = self.verdicts.get(key)
        if verdict is None or verdict.reason is None:
            raise ApprovalRefused(f"no quarantined tool {tool!r} of upstream {upstream!r}")
        if digest is not None and digest not in (verdict.current, short(verdict.current)):
            raise ApprovalRefused(
                f"tool {tool!r} of upstream {upstream!r} is now {short(verdict.current)}, not {short(digest)}",
                short(verdict.current),
            )
        pin = Pin(verdict.current, reviewed=True)
        if self.store is not None:  # first: a store that fails leaves the tool withheld, and says so
            await self.store.set(_store_key(key), pin.encode(), PIN_TTL)
        self.pins[key] = pin
        self._pending.pop(key, None)
        logger.warning(
            "tool %r of upstream %r approved: pinned %s (was %s)",
            tool,
            upstream,
            short(verdict.current),
            short(verdict.pinned) if verdict.pinned else "unpinned",
        )
        if self.on_change is not None:
            self.on_change()
        if self.notify is not None:
            await self.notify()
        return verdict

    # ----------------------------------------------------------------- the state store
    async def run(self, interval: float) -> None:
        """Keep this replica's pins and the state store's in step, every ``interval`` seconds."""
        while True:
            await self.sync()
            await anyio.sleep(interval)

    async def sync(self) -> None:
        """Write first-sight pins (if absent), adopt the store's pins; rebuild when any changed."""
        store = self.store
        if store is None:
            return
        changed = False
        try:
            for key, overwrite in sorted(self._pending.items()):
                pin = self.pins.get(key)
                self._pending.pop(key, None)
                if pin is not None:
                    await store.set(_store_key(key), pin.encode(), PIN_TTL, if_absent=not overwrite)
            for key in sorted(self.verdicts):
                raw = await store.get(_store_key(key))
                stored = Pin.decode(raw) if raw is not None else None
                if stored is None:
                    local = self.pins.get(key)
                    if local is not None:  # the store lost it (expired, flushed): this replica's stands
                        await store.set(_store_key(key), local.encode(), PIN_TTL, if_absent=True)
                elif stored != self.pins.get(key):
                    self.pins[key] = stored
                    changed = True
        except MCPlaneError as exc:
            logger.warning("tool pins: the state store failed (%s); keeping this replica's pins", exc.code)
        if changed and self.on_change is not None:
            self.on_change()
        if changed and self.notify is not None:  # an approval made on another replica: tell this one's clients
            await self.notify()

    # ----------------------------------------------------------------- logs and metrics
    def _announce(self, key: Key, current: str, reason: str, pinned: str | None) -> None:
        """Log and count a verdict once per definition (a rebuild repeats it for every tool)."""
        if not self._first_time((key, current, reason)):
            return
        upstream, tool = key
        old = short(pinned) if pinned else "none"
        if reason == "allowed":
            logger.warning(
                "tool %r of upstream %r changed (pinned %s, now %s); served (on_change: allow)",
                tool,
                upstream,
                old,
                short(current),
            )
        else:
            logger.warning(
                "tool %r of upstream %r quarantined (%s): pinned %s, now %s; approve it with "
                "mcplane gateway approve %s %s --hash %s",
                tool,
                upstream,
                reason,
                old,
                short(current),
                upstream,
                tool,
                short(current),
            )
        if self.metrics is not None:
            self.metrics.tool_quarantined.labels(upstream=upstream, reason=reason).inc()

    def _announce_findings(self, key: Key, current: str, findings: list[Finding]) -> None:
        if not self._first_time((key, current, "findings")):
            return
        upstream, tool = key
        summary = ", ".join(f"{f.kind} at {f.path}" + (f" ({f.detail})" if f.detail else "") for f in findings)
        logger.warning("tool %r of upstream %r: injection scan found %s", tool, upstream, summary)
        if self.metrics is not None:
            for finding in findings:
                self.metrics.tool_findings.labels(upstream=upstream, kind=finding.kind).inc()

    def _first_time(self, mark: tuple[Key, str, str]) -> bool:
        """Whether ``mark`` was not announced yet (the memory is bounded: an upstream that churns
        definitions may get a repeated line after thousands of them, never unbounded growth)."""
        if mark in self._announced:
            return False
        if len(self._announced) >= _SCAN_CACHE:
            self._announced.clear()
        self._announced.add(mark)
        return True

    def _gauge(self) -> None:
        if self.metrics is None:
            return
        counts: dict[str, int] = dict.fromkeys((upstream for upstream, _ in self.verdicts), 0)
        for verdict in self.quarantined():
            counts[verdict.upstream] += 1
        for upstream, count in counts.items():
            self.metrics.tools_quarantined.labels(upstream=upstream).set(count)


def _store_key(key: Key) -> str:
    return _KEY_PREFIX + json.dumps(list(key), separators=(",", ":"))

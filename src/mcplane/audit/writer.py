"""The failure policy between the audit middleware and a sink, and the retry buffer.

Each call is written twice: a ``pending`` record **before** the call runs and an outcome record
(``ok`` / ``error``) after it, linked by ``call_id``; or, with ``AuditOptions.pending=False``,
once: its outcome record.

- **Fail closed** (default): if the ``pending`` record cannot be written, the call is refused with
  ``dependency_unavailable`` and never runs; so nothing ever acts without a durable trace of the
  attempt. Nothing happened, so the refused attempt is logged at ERROR (content and its hash),
  not buffered.
- **Fail open** (``fail_open=True``): the call runs anyway; the record is logged at ERROR with
  its content and content hash and kept in the retry buffer. Once the buffer holds
  ``buffer_size`` records, new calls are refused as in fail-closed mode: the buffer bounds how
  much unaudited work fail-open allows, and no record is ever evicted.
- **A broken chain** (the sink's chain does not match its latest signed checkpoint, see
  :mod:`mcplane.audit.checkpoint`): the sink refuses every write, and records are handled as
  for a sink that is down; :meth:`AuditWriter.flush` checks the chain again, so a repaired log
  is noticed. :attr:`AuditWriter.broken` says why.
- **Outcomes** (both modes): the call has already run, so its result is returned whatever
  happens; an outcome that cannot be written is logged at ERROR and buffered (outcomes may exceed
  ``buffer_size`` by at most the number of calls in flight).
- **One record per call** (``pending=False``): there is no ``pending`` record to refuse, so
  :meth:`AuditWriter.admit` refuses a call before it runs while the log is known to be
  unavailable: a write failed and none has succeeded since, records wait for retry, or the chain
  is broken (after ``retry_interval`` it tries the sink again first, as a ``pending`` write
  would). Fail open runs the call while the buffer has room. A sink that fails unnoticed lets a
  call run; its outcome is then buffered like any other, and the calls after it are refused.

Every write first retries the buffered records, in order, in the same batch, so the chain keeps
the order in which things happened. After a failure the sink is not tried again on the call path
for ``retry_interval`` seconds (calls fail closed or are buffered at once, instead of each
waiting on a dead sink); :meth:`AuditWriter.flush` retries immediately, e.g. from a health loop.

**Group commit**: records of concurrent calls that arrive while a write is in progress are written
together by the next write, in arrival order, as one batch (one sink round trip, one ``fsync``
with ``fsync: always``). Each call still waits until its own record is written (or its failure
is handled) before it goes on, so the guarantees above hold per record; a batch that fails is
handled record by record, in order, exactly as if each had been written alone.

**Without waiting**: a sink that can append without blocking (:meth:`JsonlSink.append_nowait
<mcplane.audit.jsonl.JsonlSink.append_nowait>` between fsyncs) is written to at once, in the
caller's turn of the event loop, when nothing is queued or being written: no lock, no timeout
scope, no thread. Whenever it cannot, the record takes the path above. The audit slot hands such a
sink a plain call's records already encoded (:meth:`AuditWriter.append_parts_nowait`): the same
conditions, the same line, the same failure policy.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from mcplane.audit.chain import canonical, sha256_hex
from mcplane.audit.sink import AuditSink
from mcplane.errors import DependencyUnavailable

__all__ = ["AuditOptions", "AuditWriter"]

logger = logging.getLogger("mcplane.audit")


@dataclass(frozen=True)
class AuditOptions:
    fail_open: bool = False
    """Let calls run when the sink is down (records go to the retry buffer); default: refuse them."""
    buffer_size: int = 10_000
    """Records held for retry before even fail-open refuses new calls."""
    retry_interval: float = 1.0
    """Seconds after a sink failure before the call path tries the sink again."""
    write_timeout: float = 10.0
    """Seconds one sink write may take before it counts as failed."""
    trusted_proxies: tuple[str, ...] = ()
    """Peers (addresses, CIDR blocks) whose ``X-Forwarded-For`` names the client: ``http.trusted_proxies``."""
    trust_forwarded: bool = False
    """Deprecated (``audit.trust_forwarded``): believe ``X-Forwarded-For`` from every peer."""
    clock: Callable[[], float] = time.monotonic
    pending: bool = True
    """Write a ``pending`` record before each call (``audit.pending``); ``False``: only its outcome."""


class _Slot:
    """One record waiting for the next batch, and what became of it."""

    __slots__ = ("done", "entry", "pending", "refused")

    def __init__(self, entry: dict[str, Any], pending: bool) -> None:
        self.entry = entry
        self.pending = pending
        self.done = False
        self.refused = False


class AuditWriter:
    """Writes entries to a sink under the failure policy of :class:`AuditOptions`."""

    def __init__(self, sink: AuditSink, options: AuditOptions | None = None) -> None:
        self.sink = sink
        self.options = options or AuditOptions()
        self._buffer: deque[dict[str, Any]] = deque()
        self._lock = anyio.Lock(fast_acquire=True)
        self._queue: list[_Slot] = []
        self._writing = False
        """A holder of the lock is writing (a batch, or the buffer in :meth:`flush`)."""
        self._failed_at: float | None = None

    @property
    def sink(self) -> AuditSink:
        return self._sink

    @sink.setter
    def sink(self, sink: AuditSink) -> None:
        """The sink, and its ways to append without waiting (taken again when the sink is replaced,
        e.g. by a wrapper that counts its failures, so every write goes through the replacement)."""
        self._sink = sink
        self._append_nowait: Callable[[Sequence[Mapping[str, Any]]], list[dict[str, Any]] | None] | None = getattr(
            sink, "append_nowait", None
        )
        self._append_parts: Callable[[str, str, str, str, str], bool] | None = getattr(
            sink, "append_parts_nowait", None
        )

    @property
    def buffered(self) -> int:
        """Records waiting in the retry buffer."""
        return len(self._buffer)

    @property
    def healthy(self) -> bool:
        """The last write succeeded, nothing waits for retry and the chain is intact (a readiness signal)."""
        return self._failed_at is None and not self._buffer and self.broken is None

    @property
    def broken(self) -> str | None:
        """Why the sink refuses to extend its chain (it does not match its checkpoints), if it does."""
        reason = getattr(self.sink, "broken", None)
        return reason if isinstance(reason, str) else None

    async def write_pending(self, entry: dict[str, Any]) -> None:
        """Write the record that precedes a call; raise ``DependencyUnavailable`` to refuse the call."""
        refused = self._write_nowait(entry, pending=True)
        if refused is None:
            refused = (await self._commit(entry, pending=True)).refused
        if refused:
            raise DependencyUnavailable("the audit log is unavailable")

    async def admit(self, record: Callable[[], Mapping[str, Any]]) -> None:
        """Before a call that gets no ``pending`` record: raise ``DependencyUnavailable`` to refuse it
        when a ``pending`` record would have been refused, i.e. the log is not :attr:`healthy` (after the
        ``retry_interval`` the sink is tried again first, as :meth:`flush` does, once for the callers waiting
        on that try) and fail-open has no room.
        ``record()``: what the refused call's record would have said, logged at ERROR."""
        if self.healthy:
            return
        if not self._resting():
            await self._flush(unless_settled=True)
            if self.healthy:
                return
        if self.options.fail_open and len(self._buffer) < self.options.buffer_size:
            return
        broken = self.broken
        self._log_refused(record(), f"audit chain broken: {broken}" if broken is not None else None)
        raise DependencyUnavailable("the audit log is unavailable")

    async def write_outcome(self, entry: dict[str, Any]) -> None:
        """Write the record that follows a call. Never raises: on failure the record is buffered."""
        if self._write_nowait(entry, pending=False) is None:
            await self._commit(entry, pending=False)

    @property
    def takes_parts(self) -> bool:
        """The sink can append a record given as its canonical text (:meth:`append_parts_nowait`)."""
        return self._append_parts is not None

    def append_parts_nowait(self, head: str, middle: str, rest: str, tail: str, time: str) -> bool:
        """Write one record given as its canonical text cut at its chain members (see
        :func:`~mcplane.audit.chain.seal_parts`) now, when nothing is buffered, queued or being written,
        the sink has not failed and can without blocking: whether it was written. ``False``: nothing was
        tried; write the record with :meth:`write_pending` / :meth:`write_outcome`. Raises the sink's
        failure: hand the record to :meth:`failed_nowait`."""
        append = self._append_parts
        if append is None or self._queue or self._writing or self._buffer or self._failed_at is not None:
            return False
        return append(head, middle, rest, tail, time)

    def failed_nowait(self, entry: dict[str, Any], error: Exception, *, pending: bool) -> None:
        """The record :meth:`append_parts_nowait` failed to write, handled as :meth:`write_pending` /
        :meth:`write_outcome` handle a failed write; raises ``DependencyUnavailable`` if a ``pending``
        record is refused."""
        self._failed_at = self.options.clock()
        slot = _Slot(entry, pending)
        self._settle([slot], error)
        if slot.refused:
            raise DependencyUnavailable("the audit log is unavailable")

    async def _commit(self, entry: dict[str, Any], *, pending: bool) -> _Slot:
        """Queue the record; whoever holds the lock next writes everything queued by then (group commit)."""
        slot = _Slot(entry, pending)
        self._queue.append(slot)
        with anyio.CancelScope(shield=True):
            async with self._lock:
                if not slot.done:  # else an earlier holder wrote it with its own batch
                    batch, self._queue = self._queue, []
                    self._writing = True
                    try:
                        await self._write_batch(batch)
                    finally:
                        self._writing = False
                        # Undone only after a BaseException (which this caller raises): the records of
                        # the other callers in the batch go to the next holder of the lock.
                        self._queue[:0] = [queued for queued in batch if not queued.done and queued is not slot]
        return slot

    def _write_nowait(self, entry: dict[str, Any], *, pending: bool) -> bool | None:
        """Write the buffer plus this record now if nothing is queued or being written and the sink can
        without blocking: whether the record was refused; ``None``: it cannot (nothing was tried)."""
        append_nowait = self._append_nowait
        if append_nowait is None or self._queue or self._writing or (self._failed_at is not None and self._resting()):
            return None
        buffer = self._buffer
        try:
            written = append_nowait([*buffer, entry] if buffer else [entry])
        except Exception as exc:
            self._failed_at = self.options.clock()
            slot = _Slot(entry, pending)
            self._settle([slot], exc)
            return slot.refused
        if written is None:
            return None
        if buffer or self._failed_at is not None:
            self._written()
        return False

    async def _write_batch(self, batch: list[_Slot]) -> None:
        """Write the batch; on failure (or while resting) handle each record in order, as if alone."""
        if self._resting():
            self._settle(batch, None)
            return
        error = await self._try_write([slot.entry for slot in batch])
        if error is not None:
            self._settle(batch, error)
            return
        for slot in batch:
            slot.done = True

    def _settle(self, batch: list[_Slot], error: BaseException | None) -> None:
        """The records of a write that failed (or was not tried), in order: kept for retry or refused."""
        for slot in batch:
            room = self.options.fail_open and len(self._buffer) < self.options.buffer_size
            if not slot.pending or room:  # outcomes always; pending records when fail-open has room
                self._keep(slot.entry, error)
            else:
                self._log_refused(slot.entry, error)
                slot.refused = True
            slot.done = True

    async def flush(self) -> bool:
        """Write the buffered records now (or, after a failure with nothing buffered, ping the sink),
        then the checkpoint the sink has due, if any.

        Returns :attr:`healthy`. A readiness check or a periodic task calls this, so a sink that
        failed (or whose chain was broken, then repaired) is noticed as recovered even while
        fail-closed refuses every call, and records written before a quiet spell get their
        checkpoint ``interval`` seconds later.
        """
        await self._flush(unless_settled=False)
        return self.healthy

    async def _flush(self, *, unless_settled: bool) -> None:
        """:meth:`flush`'s work under the lock; ``unless_settled``: not if, by the time the lock is held, the
        writer is healthy or resting (another caller just tried the sink: its verdict stands)."""
        with anyio.CancelScope(shield=True):
            async with self._lock:
                if unless_settled and (self.healthy or self._resting()):
                    return
                self._writing = True
                try:
                    await self._flush_locked()
                finally:
                    self._writing = False

    async def _flush_locked(self) -> None:
        if self._buffer:
            await self._try_write([])
        elif self._failed_at is not None or self.broken is not None:
            try:
                with anyio.fail_after(self.options.write_timeout):
                    await self.sink.ping()
            except Exception:
                self._failed_at = self.options.clock()
            else:
                self._failed_at = None
                logger.warning("audit: %s recovered", self.sink.description)
        checkpoint: Callable[[], Awaitable[None]] | None = getattr(self.sink, "checkpoint", None)
        if checkpoint is not None and self.healthy:
            with anyio.move_on_after(self.options.write_timeout):
                await checkpoint()

    async def aclose(self) -> None:
        """Flush what can be flushed, then close the sink."""
        await self.flush()
        if self._buffer:
            logger.error(
                "audit: %d buffered records could not be written to %s before shutdown; "
                "each was logged at ERROR with its content when it was buffered",
                len(self._buffer),
                self.sink.description,
            )
        await self.sink.aclose()

    # ------------------------------------------------------------------ internals
    def _resting(self) -> bool:
        """Inside ``retry_interval`` after a failure: do not touch the sink on the call path."""
        failed_at = self._failed_at
        return failed_at is not None and self.options.clock() - failed_at < self.options.retry_interval

    async def _try_write(self, entries: list[dict[str, Any]]) -> BaseException | None:
        """Write the buffer plus ``entries`` as one batch; return the failure, if any."""
        batch = [*self._buffer, *entries]
        try:
            with anyio.fail_after(self.options.write_timeout):
                await self.sink.append(batch)
        except Exception as exc:
            self._failed_at = self.options.clock()
            return exc
        self._written()
        return None

    def _written(self) -> None:
        """The buffer (and the batch) reached the sink."""
        if self._failed_at is not None or self._buffer:
            logger.warning("audit: %s recovered; wrote %d buffered records", self.sink.description, len(self._buffer))
        self._failed_at = None
        self._buffer.clear()

    def _keep(self, entry: dict[str, Any], error: BaseException | None) -> None:
        self._buffer.append(entry)
        content = canonical(entry)
        logger.error(
            "audit record not written to %s (%s); kept for retry (%d buffered): sha256=%s record=%s",
            self.sink.description,
            _describe(error),
            len(self._buffer),
            sha256_hex(content),
            content.decode(),
        )

    def _log_refused(self, entry: Mapping[str, Any], error: BaseException | str | None) -> None:
        content = canonical(entry)
        logger.error(
            "audit record not written to %s (%s); call refused (dependency_unavailable): sha256=%s record=%s",
            self.sink.description,
            _describe(error),
            sha256_hex(content),
            content.decode(),
        )


def _describe(error: BaseException | str | None) -> str:
    if isinstance(error, str):
        return error
    if error is None:
        return "sink failed recently; retrying after the retry interval"
    if isinstance(error, TimeoutError):
        return "write timed out"
    return f"{type(error).__name__}: {str(error)[:200]}"

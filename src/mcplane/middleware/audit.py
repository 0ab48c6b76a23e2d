"""The audit slot: a tamper-evident record of every call, written before and after it runs.

It sits after ``authenticate`` (so it knows who) and before ``authorize`` (so denials are
recorded). For each call it writes a ``pending`` record before calling on, then an outcome
record: ``ok``; ``error`` with the code from a tool result's ``_meta["mcplane/error"].code``;
or ``error`` with the code of a raised exception (``Forbidden`` from authorize, a timeout, a
crash, a cancellation), which it re-raises unchanged. See :mod:`mcplane.audit.writer` for what
happens when the sink fails and :mod:`mcplane.audit.entry` for what a record holds.

With ``audit.pending: false`` (:attr:`AuditOptions.pending`) it writes the outcome record only:
one record per call, half the writes. What that gives up: a call that never ends (the process is
killed while it runs) leaves no trace, and a log that fails unnoticed lets one call act before
the slot knows (:meth:`~mcplane.audit.writer.AuditWriter.admit` refuses the calls after it).

Building a record cannot fail, whatever the call's arguments or name (see
:mod:`mcplane.audit.chain`), so every call that reaches this slot has its records.

The outcome record also carries what the layers inside noted for the call (:mod:`mcplane.notes`:
the rule that denied it as ``denied_by``, what an output guard found as ``guards`` and
``guard_action``), names and counts only; a note never replaces a field the record already has.

**The plain call's path**: when the sink takes records as canonical text (the JSONL sink,
:meth:`~mcplane.audit.writer.AuditWriter.append_parts_nowait`), the call's shared fields are
encoded once (:func:`~mcplane.audit.entry.call_text`) and each record is written as that text
with its own few members spliced in, straight to the sink's one ``write`` under its inline lease:
no record mapping, no second encoding. The lines and hashes are the ones the mapping would give
(``tests/audit/test_parts_path.py``). Whenever that path cannot be taken (a value that is not
plain text, notes on the outcome, records queued or buffered, a failed sink, an fsync, rotation or
checkpoint due, a lock held elsewhere), the record is built as a mapping and written by
:meth:`~mcplane.audit.writer.AuditWriter.write_pending` / ``write_outcome`` as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from mcplane.audit.chain import CHAIN_FIELDS, FORMAT_VERSION
from mcplane.audit.entry import (
    call_base,
    call_text,
    error_code_of,
    new_call_id,
    result_code,
    result_sha256,
    utc_now,
)
from mcplane.audit.forwarded import TrustedProxies
from mcplane.audit.sink import AuditSink
from mcplane.audit.writer import AuditOptions, AuditWriter
from mcplane.errors import DependencyUnavailable
from mcplane.notes import notes_of
from mcplane.pipeline import Call, CallNext

__all__ = ["AuditMiddleware"]

_PENDING_HEAD = '"duration_ms":null,"error_code":null,'
_PENDING_REST = '"result_sha256":"",'
_VERSION = f',"v":{FORMAT_VERSION}}}'
_DURATION_TEXT = 1e15
"""Below this a duration's ``repr`` is what orjson writes for it."""


class AuditMiddleware:
    def __init__(self, sink: AuditSink, options: AuditOptions | None = None) -> None:
        self.options = options = options or AuditOptions()
        self.writer = AuditWriter(sink, options)
        self.proxies = TrustedProxies.everyone() if options.trust_forwarded else TrustedProxies(options.trusted_proxies)
        self._pending = options.pending

    async def __call__(self, call: Call, call_next: CallNext) -> Any:
        writer = self.writer
        base = call_base(call, new_call_id(), self.proxies)
        shared = call_text(base) if writer.takes_parts else None
        if self._pending:
            now = utc_now()
            written = False
            if shared is not None:
                written = self._write_parts(
                    (
                        shared[0] + _PENDING_HEAD,
                        shared[1],
                        _PENDING_REST,
                        f'{shared[2]}"status":"pending",{shared[3]}"time":"{now}",{shared[4]}{_VERSION}',
                    ),
                    now,
                    lambda: _pending(base, now),
                    pending=True,
                )
            if not written:
                await writer.write_pending(_pending(base, now))
        elif not writer.healthy:
            await writer.admit(lambda: _outcome(base, utc_now(), DependencyUnavailable.code, "", 0.0))
        started = time.perf_counter()
        try:
            result = await call_next(call)
        except BaseException as exc:
            outcome = self._outcome_nowait(call, base, shared, started, error_code_of(exc, call.kind), "")
            if outcome is not None:
                await writer.write_outcome(outcome)
            raise
        outcome = self._outcome_nowait(call, base, shared, started, result_code(result), result_sha256(result))
        if outcome is not None:
            await writer.write_outcome(outcome)
        return result

    def _outcome_nowait(
        self,
        call: Call,
        base: dict[str, Any],
        shared: tuple[str, str, str, str, str] | None,
        started: float,
        code: str | None,
        result_hash: str,
    ) -> dict[str, Any] | None:
        """Write the outcome record on the plain path if it can be; else the record to write (``None``: done)."""
        now = utc_now()
        duration = round((time.perf_counter() - started) * 1000, 3)
        notes = notes_of(call.context)
        code_text = "null" if code is None else _text(code)
        if (
            shared is not None
            and not notes
            and code_text is not None
            and self._write_parts(
                (
                    f'{shared[0]}"duration_ms":{_number(duration)},"error_code":{code_text},',
                    shared[1],
                    f'"result_sha256":"{result_hash}",',
                    f'{shared[2]}"status":"{"ok" if code is None else "error"}",{shared[3]}"time":"{now}",'
                    f"{shared[4]}{_VERSION}",
                ),
                now,
                lambda: _outcome(base, now, code, result_hash, duration),
                pending=False,
            )
        ):
            return None
        outcome = _outcome(base, now, code, result_hash, duration)
        if notes:
            outcome.update(
                {key: value for key, value in notes.items() if key not in outcome and key not in CHAIN_FIELDS}
            )
        return outcome

    def _write_parts(
        self, parts: tuple[str, str, str, str], now: str, record: Callable[[], dict[str, Any]], *, pending: bool
    ) -> bool:
        """Write a record given as its canonical text on the plain path: whether it was written, or its
        failed write handed to the writer's failure policy (``record()``: the record as a mapping;
        raises ``DependencyUnavailable`` if a ``pending`` record is refused). ``False``: not tried."""
        try:
            return self.writer.append_parts_nowait(*parts, now)
        except Exception as exc:
            failure = exc
        # Outside the ``except``: a refusal is raised as the general path raises it, with no context.
        self.writer.failed_nowait(record(), failure, pending=pending)
        return True

    async def aclose(self) -> None:
        """Flush buffered records and close the sink (call at shutdown)."""
        await self.writer.aclose()


def _number(value: float) -> str:
    """What orjson writes for a duration."""
    return repr(value) if 0.0 <= value < _DURATION_TEXT else orjson.dumps(value).decode()


def _text(value: Any) -> str | None:
    """What orjson writes for an error code, if it is text it writes as it is."""
    if type(value) is not str:
        return None
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:  # a lone surrogate: escaped by canonical's repair, on the general path
        return None


def _pending(base: dict[str, Any], now: str) -> dict[str, Any]:
    return {**base, "time": now, "status": "pending", "error_code": None, "result_sha256": "", "duration_ms": None}


def _outcome(base: dict[str, Any], now: str, code: str | None, result_hash: str, duration: float) -> dict[str, Any]:
    return {
        **base,
        "time": now,
        "status": "ok" if code is None else "error",
        "error_code": code,
        "result_sha256": result_hash,
        "duration_ms": duration,
    }

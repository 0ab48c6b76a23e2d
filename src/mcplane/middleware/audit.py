"""The audit slot: a tamper-evident record of every call, written before and after it runs.

It sits after ``authenticate`` (so it knows who) and before ``authorize`` (so denials are
recorded). For each call it writes a ``pending`` record before calling on, then an outcome
record: ``ok``; ``error`` with the code from a tool result's ``_meta["mcplane/error"].code``;
or ``error`` with the code of a raised exception (``Forbidden`` from authorize, a timeout, a
crash, a cancellation), which it re-raises unchanged. See :mod:`mcplane.audit.writer` for what
happens when the sink fails and :mod:`mcplane.audit.entry` for what a record holds.

Building a record cannot fail, whatever the call's arguments or name (see
:mod:`mcplane.audit.chain`), so every call that reaches this slot has its records.

The outcome record also carries what the layers inside noted for the call (:mod:`mcplane.notes`:
the rule that denied it as ``denied_by``, what an output guard found as ``guards`` and
``guard_action``), names and counts only; a note never replaces a field the record already has.
"""

from __future__ import annotations

import time
from typing import Any

from mcplane.audit.chain import CHAIN_FIELDS
from mcplane.audit.entry import (
    call_base,
    error_code_of,
    new_call_id,
    result_code,
    result_sha256,
    utc_now,
)
from mcplane.audit.forwarded import TrustedProxies
from mcplane.audit.sink import AuditSink
from mcplane.audit.writer import AuditOptions, AuditWriter
from mcplane.notes import notes_of
from mcplane.pipeline import Call, CallNext

__all__ = ["AuditMiddleware"]


class AuditMiddleware:
    def __init__(self, sink: AuditSink, options: AuditOptions | None = None) -> None:
        self.options = options = options or AuditOptions()
        self.writer = AuditWriter(sink, options)
        self.proxies = TrustedProxies.everyone() if options.trust_forwarded else TrustedProxies(options.trusted_proxies)

    async def __call__(self, call: Call, call_next: CallNext) -> Any:
        base = call_base(call, new_call_id(), self.proxies)
        await self.writer.write_pending(
            {
                **base,
                "time": utc_now(),
                "status": "pending",
                "error_code": None,
                "result_sha256": "",
                "duration_ms": None,
            }
        )
        started = time.perf_counter()
        try:
            result = await call_next(call)
        except BaseException as exc:
            outcome = _outcome(base, started, error_code_of(exc, call.kind), "")
            await self.writer.write_outcome(_with_notes(outcome, call))
            raise
        code = result_code(result)
        outcome = _outcome(base, started, code, result_sha256(result))
        await self.writer.write_outcome(_with_notes(outcome, call))
        return result

    async def aclose(self) -> None:
        """Flush buffered records and close the sink (call at shutdown)."""
        await self.writer.aclose()


def _with_notes(outcome: dict[str, Any], call: Call) -> dict[str, Any]:
    notes = notes_of(call.context)
    if notes:
        outcome.update({key: value for key, value in notes.items() if key not in outcome and key not in CHAIN_FIELDS})
    return outcome


def _outcome(base: dict[str, Any], started: float, code: str | None, result_sha256: str) -> dict[str, Any]:
    return {
        **base,
        "time": utc_now(),
        "status": "ok" if code is None else "error",
        "error_code": code,
        "result_sha256": result_sha256,
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
    }

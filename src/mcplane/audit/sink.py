"""The one Protocol every audit sink implements.

A sink owns its chain head: :meth:`AuditSink.append` seals the entries it is given (``seq``,
``prev_hash``, ``hash``; see :mod:`mcplane.audit.chain`) after the current last record and
writes them all or none, in order. It raises on any failure; the failure policy (fail closed or
open, the retry buffer) lives above it, in :class:`mcplane.audit.AuditWriter`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

__all__ = ["AuditSink"]


@runtime_checkable
class AuditSink(Protocol):
    @property
    def description(self) -> str:
        """Where records go, safe to log (no credentials)."""
        ...

    async def append(self, entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Seal ``entries`` onto the chain and store them atomically; return the sealed records."""
        ...

    async def ping(self) -> None:
        """Raise unless the store is reachable and writable now (readiness; recovery after a failure)."""
        ...

    async def read_lines(self) -> list[str]:
        """Every stored record as its canonical JSON text, in chain order (for verify and tests)."""
        ...

    async def aclose(self) -> None:
        """Flush and release files or connections. The sink may be appended to again afterwards."""
        ...

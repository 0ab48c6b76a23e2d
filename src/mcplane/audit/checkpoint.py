"""Signed checkpoints: what proves an audit log is complete, not only unedited.

The hash chain catches an edited, inserted, reordered or deleted record, but not a log cut short
at its tail or replaced by another valid chain. A checkpoint is a signed statement, kept where
the log's writer path does not rewrite it along with the log (a file beside it, a separate
PostgreSQL table), of how far the chain went::

    {"type": "mcplane.audit.checkpoint", "v": 1, "log": "audit.jsonl",
     "seq": 1200, "hash": "<record 1200's hash>", "records": 1200,
     "segment": 1001, "offset": 80412,        # JSONL: the segment holding record 1200 (by its first
                                              # seq) and its size through that record; PostgreSQL:
                                              # the table, and no offset
     "first_time": "…Z", "last_time": "…Z",   # the "time" of record 1 and of record 1200
     "at": "…Z", "reason": "records",          # when and why: open, records, interval, rotation, shutdown
     "key": "<key id>", "sig": "<Ed25519 signature, base64url>"}

The signature covers the canonical JSON (:func:`mcplane.audit.chain.canonical`) of everything
but ``sig``. A sink writes one when it first appends (``open``, at the head it verified), every
``every`` records or ``interval`` seconds that saw records, when it rotates a segment and at a
clean shutdown, each time after the records it covers are on disk.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mcplane.audit.chain import canonical
from mcplane.audit.keys import key_id, load_private_key, load_public_key
from mcplane.secrets import Secret

__all__ = [
    "CHECKPOINT_TYPE",
    "Anchor",
    "ChainBroken",
    "CheckpointOptions",
    "Schedule",
    "Signer",
    "describe",
    "highest_recent",
    "make_checkpoint",
    "parse_checkpoint",
    "records_text",
    "signature_problem",
    "utc_text",
]

logger = logging.getLogger("mcplane.audit")

CHECKPOINT_TYPE = "mcplane.audit.checkpoint"


class ChainBroken(Exception):
    """The chain does not match its latest checkpoint (or has records and no checkpoint at all)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class CheckpointOptions:
    key: Secret | str | None = None
    """The Ed25519 private key; ``None``: one generated and kept beside the checkpoints."""
    trusted_keys: tuple[str, ...] = ()
    """Earlier public keys whose checkpoints the start-up check still accepts (after a key change)."""
    every: int = 10_000
    """Records a sink writes between two checkpoints."""
    interval: float = 30.0
    """Seconds after which records not yet covered get a checkpoint (on the next write or readiness check)."""
    location: str | None = None
    """Where they go: a file (JSONL sink; default ``<log>.checkpoints``) or a table (PostgreSQL sink;
    default ``<table>_checkpoints``)."""


class Anchor(NamedTuple):
    """A record a checkpoint covers: the last one a sink wrote (a tuple: the JSONL sink makes one per append)."""

    seq: int
    hash: str
    segment: int | str | None
    """JSONL: the first ``seq`` of the segment holding the record; PostgreSQL: the table."""
    offset: int | None
    """JSONL: the segment's size in bytes through this record."""
    last_time: str | None
    """The record's ``time``."""


def utc_text(seconds: float) -> str:
    """``2026-05-01T12:00:00.123Z``, like a record's ``time``."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record_time(record: Mapping[str, Any]) -> str | None:
    value = record.get("time")
    return value if isinstance(value, str) else None


class Signer:
    """Signs checkpoints with the configured key (re-read when a secret refreshes) or a default one."""

    def __init__(
        self,
        key: Secret | str | None,
        default_key: Callable[[], Ed25519PrivateKey],
        trusted_keys: Sequence[str] = (),
    ) -> None:
        self._key = key
        self._default_key = default_key
        self._trusted = [load_public_key(text) for text in trusted_keys]
        self._cached: tuple[str, Ed25519PrivateKey] | None = None
        self._default: Ed25519PrivateKey | None = None

    @property
    def generated(self) -> bool:
        """No key was configured: the sink keeps its own."""
        return self._key is None

    def private_key(self) -> Ed25519PrivateKey:
        if self._key is None:
            if self._default is None:
                self._default = self._default_key()
            return self._default
        text = self._key.get() if isinstance(self._key, Secret) else self._key
        cached = self._cached
        if cached is None or cached[0] != text:
            cached = self._cached = (text, load_private_key(text))
        return cached[1]

    def keyring(self) -> dict[str, Ed25519PublicKey]:
        """The public keys whose checkpoints this writer accepts: its own and the trusted earlier ones."""
        own = self.private_key().public_key()
        ring = {key_id(own): own}
        ring.update((key_id(key), key) for key in self._trusted)
        return ring

    def sign(self, body: dict[str, Any]) -> dict[str, Any]:
        key = self.private_key()
        unsigned = {**body, "key": key_id(key)}
        signature = key.sign(canonical(unsigned))
        return {**unsigned, "sig": base64.urlsafe_b64encode(signature).decode("ascii").rstrip("=")}


def make_checkpoint(anchor: Anchor, *, log: str, first_time: str | None, reason: str, at: float) -> dict[str, Any]:
    """The unsigned checkpoint body for ``anchor``."""
    return {
        "type": CHECKPOINT_TYPE,
        "v": 1,
        "log": log,
        "seq": anchor.seq,
        "hash": anchor.hash,
        "records": anchor.seq,
        "segment": anchor.segment,
        "offset": anchor.offset,
        "first_time": first_time,
        "last_time": anchor.last_time,
        "at": utc_text(at),
        "reason": reason,
    }


def parse_checkpoint(line: str | bytes) -> dict[str, Any] | None:
    """The checkpoint on ``line``, or ``None`` when it is not one (garbage, a torn write, another object)."""
    try:
        value: Any = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict) or value.get("type") != CHECKPOINT_TYPE:
        return None
    checkpoint: dict[str, Any] = value
    seq, digest = checkpoint.get("seq"), checkpoint.get("hash")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0 or not isinstance(digest, str):
        return None
    if not isinstance(checkpoint.get("key"), str) or not isinstance(checkpoint.get("sig"), str):
        return None
    return checkpoint


def signature_problem(checkpoint: Mapping[str, Any], keyring: Mapping[str, Ed25519PublicKey]) -> str | None:
    """Why ``checkpoint`` is not signed by a key of ``keyring`` (``None``: it is)."""
    ident = str(checkpoint["key"])
    key = keyring.get(ident)
    if key is None:
        return f"is signed by key {ident}, which is not trusted (forged, or verify with that key's --public-key)"
    text = str(checkpoint["sig"])
    try:
        signature = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        key.verify(signature, canonical({k: v for k, v in checkpoint.items() if k != "sig"}))
    except (InvalidSignature, binascii.Error, ValueError):
        return f"has a signature that does not match its content or key {ident} (forged or edited)"
    return None


def records_text(first: int, last: int) -> str:
    """``record 7`` or ``records 7-9``."""
    return f"record {first}" if first == last else f"records {first}-{last}"


RECENT = 64
"""How many of the latest checkpoints the start-up check reads: with several writers, the one that
covers the most records need not be the very last one written."""


def highest_recent(
    lines: Sequence[str | bytes], keyring: Mapping[str, Ed25519PublicKey], where: str
) -> dict[str, Any] | None:
    """Of the latest checkpoints (``lines``, oldest first), the valid one that covers the most records
    (``None``: there are none); :class:`ChainBroken` if one of them is not valid."""
    best: dict[str, Any] | None = None
    for line in lines:
        if not line.strip():
            continue
        checkpoint = parse_checkpoint(line)
        if checkpoint is None:
            raise ChainBroken(f"one of the latest lines of {where} is not a checkpoint (edited)")
        problem = signature_problem(checkpoint, keyring)
        if problem is not None:
            raise ChainBroken(f"{describe(checkpoint)} in {where} {problem}")
        if best is None or checkpoint["seq"] >= best["seq"]:
            best = checkpoint
    return best


def describe(checkpoint: Mapping[str, Any]) -> str:
    """``the checkpoint of 2026-…Z (seq 1200)``."""
    return f"the checkpoint of {checkpoint.get('at')} (seq {checkpoint['seq']})"


class Schedule:
    """When the next checkpoint is due: after ``every`` records, or ``interval`` seconds that saw records."""

    def __init__(self, every: int, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        if every < 1 or not interval > 0:
            raise ValueError("checkpoints need every >= 1 record and an interval > 0 seconds")
        self.every = every
        self.interval = interval
        self._clock = clock
        self.pending = 0
        """Records written since the last checkpoint."""
        self._last = clock()

    def add(self, records: int) -> None:
        self.pending += records

    def due(self, coming: int = 0) -> str | None:
        """``"records"`` or ``"interval"`` if a checkpoint is due once ``coming`` more records are written."""
        if self.pending + coming >= self.every:
            return "records"
        if self.pending + coming > 0 and self._clock() - self._last >= self.interval:
            return "interval"
        return None

    def done(self) -> None:
        self.pending = 0
        self._last = self._clock()


def log_checkpoint(sink: str, checkpoint: Mapping[str, Any]) -> None:
    """Each checkpoint also goes to the process log: a copy of the head outside the audit store."""
    logger.info(
        "audit checkpoint: %s seq %s hash %s (%s, key %s)",
        sink,
        checkpoint["seq"],
        checkpoint["hash"],
        checkpoint.get("reason"),
        checkpoint["key"],
    )

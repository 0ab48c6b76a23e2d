"""The hash-chain format shared by every audit sink and by ``mcplane audit verify``.

A record is one JSON object. Its canonical form is orjson with sorted keys (compact, UTF-8)::

    hash = sha256(canonical(record without "hash"))      # so it covers "prev_hash" and "seq"
    record[n].prev_hash == record[n - 1].hash             # GENESIS for record 1
    record[n].seq == n                                    # 1, 2, 3, ... without gaps

A JSONL file holds one canonical record per line; PostgreSQL holds the same canonical text in a
``record`` column, ordered by ``seq``. Editing, deleting, inserting or reordering a record breaks
either a record's own hash, the ``seq`` sequence or the ``prev_hash`` links, so :mod:`.verify`
finds the first one. (Someone who rewrites *every* later record, or truncates the tail, is only
caught against a head hash kept elsewhere: ``verify`` prints the head for that purpose.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import BaseModel

__all__ = ["CHAIN_FIELDS", "FORMAT_VERSION", "GENESIS", "canonical", "record_hash", "seal", "sha256_hex"]

FORMAT_VERSION = 1
GENESIS = "0" * 64
"""The ``prev_hash`` of the first record of a chain."""
CHAIN_FIELDS = frozenset({"v", "seq", "prev_hash", "hash"})


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    return str(value)


def canonical(value: Any) -> bytes:
    """Canonical JSON: sorted keys, compact, UTF-8; non-JSON values by a fixed fallback."""
    return orjson.dumps(value, default=_default, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_hash(record: Mapping[str, Any]) -> str:
    """The hash a record must carry: SHA-256 over its canonical form without ``hash``."""
    return sha256_hex(canonical({k: v for k, v in record.items() if k != "hash"}))


def seal(entry: Mapping[str, Any], seq: int, prev_hash: str) -> dict[str, Any]:
    """Link an entry into the chain after the record whose hash is ``prev_hash``."""
    clash = CHAIN_FIELDS.intersection(entry)
    if clash:
        raise ValueError(f"an audit entry may not set chain fields: {sorted(clash)}")
    record: dict[str, Any] = {**entry, "v": FORMAT_VERSION, "seq": seq, "prev_hash": prev_hash}
    record["hash"] = record_hash(record)
    return record

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

**Canonicalisation never fails.** Whatever a client sends is hashed (arguments) or stored (the
name of what it called), so :func:`canonical` has one deterministic answer for every value. When
orjson refuses a value, the parts it refuses are rewritten into plain JSON, and only those:

- a lone surrogate in a string or key (JSON lets a client send the escape ``"\\ud800"``, and the
  SDK's 2026-07-28 HTTP transport parses it): the six characters ``\\ud800``, backslash included
  (the same text a client gets by sending that backslash itself);
- an integer beyond 64 bits: the string ``"mcplane:int:0x…"`` (hexadecimal: Python refuses
  decimal strings of more than 4,300 digits), or ``"mcplane:int:sha256:…"`` / ``"…:-sha256:…"``
  (a digest of its magnitude, and its sign) past 65,536 bits;
- nesting: orjson refuses more than 254 levels, and in a value that needs this fallback for any
  reason each container at depth :data:`MAX_DEPTH` becomes the string ``"mcplane:too-deep"``; a
  container that holds itself becomes ``"mcplane:cycle"``;
- anything else orjson cannot write: its ``str()``, else ``"mcplane:<TypeName>"``.

The result is plain JSON that orjson reads back and writes again byte for byte, so a stored
record re-canonicalises to the bytes it was hashed as, and ``verify`` checks it like any other.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import itertools
import re
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import BaseModel

__all__ = [
    "CHAIN_FIELDS",
    "FORMAT_VERSION",
    "GENESIS",
    "MAX_DEPTH",
    "canonical",
    "escape_text",
    "plain_hash",
    "record_hash",
    "seal",
    "seal_line",
    "seal_parts",
    "sha256_hex",
]

FORMAT_VERSION = 1
GENESIS = "0" * 64
"""The ``prev_hash`` of the first record of a chain."""
CHAIN_FIELDS = frozenset({"v", "seq", "prev_hash", "hash"})
MAX_DEPTH = 64
"""How deep a value that needs the fallback keeps its containers (``limits.max_argument_depth``'s default)."""

_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
_ORJSON_LEVELS = 254
"""The deepest nesting of containers orjson writes."""
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
"""orjson writes integers in this range (i64 and u64)."""
_INT_HEX_BITS = 65_536
_SURROGATE = re.compile("[\ud800-\udfff]")
TOO_DEEP = "mcplane:too-deep"
CYCLE = "mcplane:cycle"


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    return str(value)


def canonical(value: Any) -> bytes:
    """Canonical JSON: sorted keys, compact, UTF-8; non-JSON values by a fixed fallback. Never raises."""
    try:
        return orjson.dumps(value, default=_default, option=_OPTIONS)
    except Exception:  # a lone surrogate, a huge integer, deep nesting, a default that failed
        pass
    try:
        return orjson.dumps(_Repair().value(value, 0, known_bad=True), default=_default, option=_OPTIONS)
    except Exception:  # only an object whose conversion changed between two tries gets here
        return orjson.dumps(f"mcplane:unwritable:{type(value).__name__}")


def escape_text(text: str) -> str:
    """``text`` with each lone surrogate written as the six characters ``\\udXXX`` (else ``text`` itself)."""
    if text.isascii() or _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _int(value: int) -> int | str:
    if _INT_MIN <= value <= _INT_MAX:
        return value
    if value.bit_length() <= _INT_HEX_BITS:
        return f"mcplane:int:{value:#x}"
    magnitude = abs(value)
    digest = sha256_hex(magnitude.to_bytes((magnitude.bit_length() + 7) // 8, "big"))
    return f"mcplane:int:{'-' if value < 0 else ''}sha256:{digest}"


def _key(key: Any) -> Any:
    """A mapping key orjson writes with ``OPT_NON_STR_KEYS`` (the same object when it already can)."""
    if isinstance(key, str):
        return escape_text(str.__str__(key))
    if key is None or isinstance(key, bool | float):
        return key
    if isinstance(key, int):
        return key if type(key) is int and _INT_MIN <= key <= _INT_MAX else str(_int(int(key)))
    return _text_of(key)


def _text_of(value: Any) -> str:
    try:
        return escape_text(str(value))
    except Exception:  # a __str__ that fails
        return f"mcplane:{type(value).__name__}"


_PLAIN = frozenset({str, int, float, bool, type(None)})
_BLOCK = 256
"""Children tested together before the children of a failing block are looked at one by one."""
_SMALL = 16
"""A list or dict this short is rebuilt rather than tested first (a failed test costs more)."""


class _Repair:
    """The rewrite behind :func:`canonical`'s fallback, at orjson's speed where it can be.

    Only what fails is rebuilt in Python: the children of a container that fails are tested with
    orjson (in blocks of :data:`_BLOCK`, then one by one; short ones are rebuilt instead), those
    that pass are kept as they are, and the rest are rewritten the same way. A test is orjson
    writing the value under as many wrapping lists as leave it exactly the nesting it may still
    use (orjson refuses more than :data:`_ORJSON_LEVELS` levels), so a kept value never reaches
    :data:`MAX_DEPTH`. In a group known to fail whose keys and plain values passed, the last child
    is known to fail when the others passed, and is rewritten without a test: a chain of single
    children costs one walk, not one test per level. A value comes back as the same object when
    nothing in it needed rewriting.
    """

    def __init__(self) -> None:
        # levels[i] is the list at nesting i (0 outermost); levels[i][0] is levels[i + 1] between tests.
        self._levels: list[list[Any]] = [[None] for _ in range(_ORJSON_LEVELS)]
        for outer, inner in zip(self._levels, self._levels[1:], strict=False):
            outer[0] = inner
        self._active: set[int] = set()

    def fits(self, value: Any, depth: int) -> bool:
        """orjson writes ``value`` as it is, at ``depth``, without a container reaching MAX_DEPTH."""
        wraps = _ORJSON_LEVELS - (MAX_DEPTH - depth)
        holder = self._levels[wraps - 1]
        holder[0] = value
        try:
            orjson.dumps(self._levels[0], default=_default, option=_OPTIONS)
        except Exception:
            return False
        finally:
            holder[0] = self._levels[wraps] if wraps < _ORJSON_LEVELS else None
        return True

    def value(self, value: Any, depth: int, *, known_bad: bool = False) -> Any:
        """``value`` as plain JSON orjson writes (``known_bad``: it is known not to fit as it is)."""
        kind = type(value)
        if kind is str:
            return escape_text(value)
        if kind is int:
            return _int(value)
        if kind in _PLAIN:
            return value
        if kind is not list and kind is not dict and kind is not tuple:
            return value if not known_bad and self.fits(value, depth) else self._other(value, depth)
        if not known_bad and len(value) > _SMALL:
            if self.fits(value, depth):
                return value
            known_bad = True
        if depth >= MAX_DEPTH:
            return TOO_DEEP
        ident = id(value)
        if ident in self._active:
            return CYCLE
        self._active.add(ident)
        try:
            if kind is dict:
                out, changed = self._dict(value, depth, known_bad)
            elif len(value) <= _BLOCK:
                out, changed = self._list_group(value, depth, known_bad)
            else:
                out, changed = self._list(value, depth)
        finally:
            self._active.discard(ident)
        return out if changed else value

    def _list(self, items: Any, depth: int) -> tuple[list[Any], bool]:
        """A long list (or tuple) that does not fit as it is, block by block."""
        out: list[Any] = []
        for start in range(0, len(items), _BLOCK):
            block = items[start : start + _BLOCK]  # the block stands in for the list at its depth
            out += block if self.fits(block, depth) else self._list_group(block, depth, True)[0]
        return out, True

    def _list_group(self, items: Any, depth: int, known_bad: bool) -> tuple[list[Any], bool]:
        out = list(items)
        suspects: list[int] = []
        clean = True
        for index, child in enumerate(out):
            kind = type(child)
            if kind is str:
                if not child.isascii() and (fixed := escape_text(child)) is not child:
                    out[index], clean = fixed, False
            elif kind is int:
                if not _INT_MIN <= child <= _INT_MAX:
                    out[index], clean = _int(child), False
            elif kind not in _PLAIN:
                suspects.append(index)
        last = len(suspects) - 1
        for n, index in enumerate(suspects):
            child = out[index]
            fixed = self.value(child, depth + 1, known_bad=known_bad and clean and n == last)
            if fixed is not child:
                out[index], clean = fixed, False
        return out, not clean

    def _dict(self, mapping: dict[Any, Any], depth: int, known_bad: bool) -> tuple[dict[Any, Any], bool]:
        if len(mapping) <= _BLOCK:
            return self._dict_group(mapping, depth, known_bad)
        out: dict[Any, Any] = {}
        pairs = iter(mapping.items())
        while block := dict(itertools.islice(pairs, _BLOCK)):
            out.update(block if self.fits(block, depth) else self._dict_group(block, depth, True)[0])
        return out, True

    def _dict_group(self, mapping: dict[Any, Any], depth: int, known_bad: bool) -> tuple[dict[Any, Any], bool]:
        out: dict[Any, Any] = {}
        suspects: list[Any] = []
        clean = True
        for key, child in mapping.items():
            if (type(key) is not str or not key.isascii()) and (fixed_key := _key(key)) is not key:
                key, clean = fixed_key, False
            kind = type(child)
            if kind is str:
                if not child.isascii() and (fixed := escape_text(child)) is not child:
                    child, clean = fixed, False
            elif kind is int:
                if not _INT_MIN <= child <= _INT_MAX:
                    child, clean = _int(child), False
            elif kind not in _PLAIN:
                suspects.append(key)
            out[key] = child
        last = len(suspects) - 1
        for n, key in enumerate(suspects):
            child = out[key]
            fixed = self.value(child, depth + 1, known_bad=known_bad and clean and n == last)
            if fixed is not child:
                out[key], clean = fixed, False
        return out, not clean

    def _other(self, value: Any, depth: int) -> Any:
        """Anything but a plain str, int, float, bool, None, list, tuple or dict, known not to fit."""
        if isinstance(value, str):
            return escape_text(str.__str__(value))  # a str subclass (a str enum too) by its characters
        if isinstance(value, int):
            return _int(int(value))
        if isinstance(value, float):
            return float(value)
        if isinstance(value, dict):
            plain: dict[Any, Any] = dict(value)
            return self.value(plain, depth, known_bad=True)
        if isinstance(value, list | tuple):
            return self.value(list(value), depth, known_bad=True)
        if isinstance(value, bytes | bytearray):
            return bytes(value).hex()
        if isinstance(value, set | frozenset):
            if depth >= MAX_DEPTH:
                return TOO_DEEP
            members: set[Any] | frozenset[Any] = value
            rewritten = [self.value(member, depth + 1) for member in members]
            return sorted(rewritten, key=lambda member: orjson.dumps(member, default=_default, option=_OPTIONS))
        if isinstance(value, enum.Enum):
            return self.value(value.value, depth)
        if isinstance(value, BaseModel):
            try:
                dumped: Any = value.model_dump(mode="json", by_alias=True, exclude_none=True)
            except Exception:
                return _text_of(value)
            return self.value(dumped, depth)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = {field.name: getattr(value, field.name, None) for field in dataclasses.fields(value)}
            return self.value(fields, depth)
        try:  # datetime, UUID and the like, as orjson writes them
            written = orjson.dumps(value, default=_default, option=_OPTIONS)
        except Exception:
            return _text_of(value)
        return self.value(orjson.loads(written), depth)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_hash(record: Mapping[str, Any]) -> str:
    """The hash a record must carry: SHA-256 over its canonical form without ``hash``."""
    return sha256_hex(canonical({k: v for k, v in record.items() if k != "hash"}))


def seal(entry: Mapping[str, Any], seq: int, prev_hash: str) -> dict[str, Any]:
    """Link an entry into the chain after the record whose hash is ``prev_hash``."""
    if "v" in entry or "seq" in entry or "prev_hash" in entry or "hash" in entry:
        raise ValueError(f"an audit entry may not set chain fields: {sorted(CHAIN_FIELDS.intersection(entry))}")
    record: dict[str, Any] = {**entry, "v": FORMAT_VERSION, "seq": seq, "prev_hash": prev_hash}
    record["hash"] = sha256_hex(canonical(record))  # record_hash(record): it has no "hash" yet
    return record


_HASH_SLOT = b'"hash":"' + GENESIS.encode() + b'"'
_HASH_AT = len(b'"hash":"')


def seal_line(entry: Mapping[str, Any], seq: int, prev_hash: str) -> tuple[dict[str, Any], bytes]:
    """``seal(entry, seq, prev_hash)`` and its canonical form (the stored line), from one encoding.

    The record is encoded once with a placeholder hash (:data:`GENESIS`) in its sorted place; the
    bytes without that member are the canonical form the hash covers (keys sorted, so removing one
    member leaves the others as they were), and the hash then takes the placeholder's place. When
    the placeholder's text occurs more than once (a nested ``"hash"`` of 64 zeros), both are
    encoded as :func:`seal` does.
    """
    if "v" in entry or "seq" in entry or "prev_hash" in entry or "hash" in entry:
        raise ValueError(f"an audit entry may not set chain fields: {sorted(CHAIN_FIELDS.intersection(entry))}")
    record: dict[str, Any] = {**entry, "v": FORMAT_VERSION, "seq": seq, "prev_hash": prev_hash, "hash": GENESIS}
    line = canonical(record)
    at = line.find(_HASH_SLOT)
    if at > 0 and line.find(_HASH_SLOT, at + 1) < 0:
        end = at + len(_HASH_SLOT)
        # Never the last member ("prev_hash", "seq" and "v" sort after it): the comma after it goes with it.
        body = line[:at] + line[end + 1 :]
        digest = sha256_hex(body)
        record["hash"] = digest
        return record, line[: at + _HASH_AT] + digest.encode() + line[at + _HASH_AT + 64 :]
    del record["hash"]
    record["hash"] = sha256_hex(canonical(record))
    return record, canonical(record)


_SEQ_MAX = 2**63 - 1
"""The highest ``seq`` :func:`seal_parts` writes (orjson writes integers up to 64 bits; nothing gets near)."""


def seal_parts(head: str, middle: str, rest: str, tail: str, seq: int, prev_hash: str) -> tuple[str, bytes] | None:
    """The hash and the stored line (newline included) of a record given as its canonical text cut at its chain
    members, or ``None`` when ``seq`` or ``prev_hash`` are not ones it writes (the caller then seals a mapping).

    The record's canonical form is ``head`` + ``"hash":"…",`` + ``middle`` + ``"prev_hash":"…",`` + ``rest``
    + ``"seq":…,`` + ``tail``: ``head`` starts with ``{`` and ends with ``{`` or ``,``, ``middle`` and ``rest``
    are whole members each followed by a comma, ``tail`` holds the members after ``seq`` (``"v"`` among them)
    and the closing ``}``. The caller answers for those parts being exactly what :func:`canonical` writes
    for them; this adds the chain members as :func:`seal_line` does: the same line, the same hash. A
    ``prev_hash`` that is not 64 ASCII letters and digits (a head read from a file someone edited), which
    orjson might escape, is left to :func:`seal_line`, which writes whatever it is as orjson does.
    """
    if not (0 < seq <= _SEQ_MAX and (prev_hash is _last_digest[0] or plain_hash(prev_hash))):
        return None
    after = f'{middle}"prev_hash":"{prev_hash}",{rest}"seq":{seq},{tail}'
    digest = sha256_hex((head + after).encode())
    _last_digest[0] = digest
    return digest, f'{head}"hash":"{digest}",{after}\n'.encode()


_last_digest: list[str | None] = [None]
"""The hash :func:`seal_parts` made last: the next record's ``prev_hash`` is usually that object, known plain."""


def plain_hash(value: str) -> bool:
    """``value`` is 64 ASCII letters and digits: text orjson writes as it is."""
    return len(value) == 64 and value.isascii() and value.isalnum()

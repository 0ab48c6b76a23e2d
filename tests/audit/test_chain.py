"""canonical() answers every value, the same bytes every time, and what it writes reads back to the same bytes."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import hashlib
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from mcplane.audit import GENESIS, canonical, record_hash, seal, verify_lines
from mcplane.audit.chain import MAX_DEPTH, escape_text, seal_line


def _nest(levels: int, leaf: Any = None) -> list[Any]:
    value: list[Any] = [] if leaf is None else [leaf]
    for _ in range(levels - 1):
        value = [value]
    return value


def _levels(value: Any) -> int:
    """Container levels, counted without recursion (the values here are deeper than Python allows)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        node, level = todo.pop()
        if isinstance(node, list | dict):
            deepest = max(deepest, level)
            children: list[Any] = list(node.values()) if isinstance(node, dict) else node  # pyright: ignore[reportUnknownArgumentType, reportUnknownMemberType]
            todo += [(child, level + 1) for child in children]
    return deepest


class Model(BaseModel):
    text: str
    count: int = 0


@dataclasses.dataclass
class Point:
    label: str
    sizes: list[int]


class Colour(enum.Enum):
    ODD = "\udc00"


def _cycle() -> list[Any]:
    loop: list[Any] = []
    loop += [loop, loop]
    return loop


HOSTILE: dict[str, Any] = {
    "lone surrogate": {"value": "\ud800"},
    "lone surrogate key": {"\udfff": 1},
    "surrogate pair as two code points": {"value": "\ud83d\ude00"},
    "1001-digit integer": {"value": int("9" * 1001)},
    "huge negative integer": {"value": -(2**70_000)},
    "integer key beyond 64 bits": {"value": {2**64: 1}},
    "300 deep": {"value": _nest(300)},
    "300 deep around a surrogate": _nest(300, "\ud800"),
    "fine nesting beside a surrogate": {"deep": _nest(100), "bad": "\ud800"},
    "model with a surrogate": {"value": Model(text="\ud800")},
    "dataclass with a huge integer": {"value": Point("\ud800", [1, 2**65])},
    "enum of a surrogate": {"value": Colour.ODD},
    "set with a huge integer": {"value": {2**70, 1, "a"}},
    "datetime and uuid beside a surrogate": {
        "at": datetime.datetime(2026, 1, 1),
        "id": uuid.UUID(int=5),
        "x": "\udc00",
    },
    "tuple and bytes": {"value": (1, "\ud800"), "raw": b"\x00\xff"},
    "unhashable key type": {(1, 2): "\ud800"},
    "a cycle": {"value": _cycle()},
    "a long list with one bad item": {"items": ["fine"] * 5000 + ["\ud800"] + ["fine"] * 5000},
    "a wide dict with one bad value": {f"k{i}": ("\ud800" if i == 777 else i) for i in range(2000)},
}


@pytest.mark.parametrize("value", list(HOSTILE.values()), ids=list(HOSTILE))
def test_every_value_has_one_canonical_form_that_reads_back_to_itself(value: Any) -> None:
    written = canonical(value)
    assert canonical(value) == written  # deterministic
    assert canonical(orjson.loads(written)) == written  # what is stored re-canonicalises to the same bytes
    assert _levels(orjson.loads(written)) <= MAX_DEPTH  # each of these needs the fallback, which cuts there


def test_the_rewrites_are_the_documented_ones() -> None:
    def read(value: Any) -> Any:
        return orjson.loads(canonical(value))

    assert read({"v": "a\ud800b"}) == {"v": "a\\ud800b"}
    assert read({"\udfff": 1}) == {"\\udfff": 1}
    assert read({"v": 2**64}) == {"v": "mcplane:int:0x10000000000000000"}
    assert read({"v": -(2**64)}) == {"v": "mcplane:int:-0x10000000000000000"}
    assert read({"v": 2**64 - 1, "w": -(2**63)}) == {"v": 2**64 - 1, "w": -(2**63)}  # orjson's own range
    assert read({"v": 2**70_000})["v"].startswith("mcplane:int:sha256:")
    assert read({"v": -(2**70_000)})["v"].startswith("mcplane:int:-sha256:")
    assert read({"v": _cycle()}) == {"v": ["mcplane:cycle", "mcplane:cycle"]}
    deep = read(_nest(300))
    assert _levels(deep) == MAX_DEPTH
    assert orjson.dumps(deep).count(b'"mcplane:too-deep"') == 1


def test_only_what_orjson_refuses_is_rewritten() -> None:
    fine: dict[str, Any] = {"deep": _nest(200), "list": list(range(1000)), "text": "héllo ✓", "big": 2**64 - 1}
    assert canonical(fine) == orjson.dumps(fine, option=orjson.OPT_SORT_KEYS)  # the fast path, untouched
    mixed = {**fine, "deep": _nest(40), "bad": "\ud800"}
    expected = {**fine, "deep": _nest(40), "bad": "\\ud800"}
    assert canonical(mixed) == orjson.dumps(expected, option=orjson.OPT_SORT_KEYS)


def test_different_hostile_values_hash_differently() -> None:
    forms = {canonical({"value": value}) for value in ("\ud800", "\ud801", "\udc00", 2**64, 2**64 + 1, 10**1000)}
    assert len(forms) == 6


def test_escape_text_returns_clean_text_itself() -> None:
    clean = "plain ✓ text"
    assert escape_text(clean) is clean
    assert escape_text("\ud800x\udfff") == "\\ud800x\\udfff"


def test_a_chain_of_hostile_records_verifies() -> None:
    lines, prev = [], GENESIS
    for seq, value in enumerate(HOSTILE.values(), 1):
        record = seal({"name": "\ud800" * seq, "value": value}, seq, prev)
        prev = record["hash"]
        line = canonical(record)
        assert record_hash(orjson.loads(line)) == record["hash"]
        lines.append(line.decode())
    report = verify_lines(lines)
    assert report.ok, report.render()
    assert report.count == len(HOSTILE)


PLAIN_ENTRIES: list[dict[str, Any]] = [
    {"name": "échø ✓ 日本語 🚀", "args_sha256": "0" * 64, "duration_ms": 0.1},
    {"name": "floats", "values": [0.1, 1e300, -0.0, 5e-324, 1.5, 2.0**53 + 1], "tenant": None},
    {"z": {"b": [1, {"y": 2, "x": 3}], "a": "\u2028\x00\x1f"}, "a": True, "m": '\\"quoted"'},
    {"hashish": 1, "has": 2, "hash_": 3, "h": 4, "i": 5},  # keys that sort around "hash"
    {},
]


@pytest.mark.parametrize("entry", PLAIN_ENTRIES)
def test_seal_hashes_the_canonical_record_without_its_hash(entry: dict[str, Any]) -> None:
    record = seal(entry, 7, "f" * 64)
    without = {key: value for key, value in record.items() if key != "hash"}
    assert record["hash"] == hashlib.sha256(canonical(without)).hexdigest() == record_hash(record)
    line = canonical(record)
    assert line == orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    assert record_hash(orjson.loads(line)) == record["hash"]


SEAL_LINE_ENTRIES: list[dict[str, Any]] = [
    *PLAIN_ENTRIES,
    {"x": 1},  # every key after "hash": it is the first member
    {"a": 1},  # every entry key before "hash"
    {"guards": {"hash": GENESIS}, "name": "a nested placeholder"},  # the placeholder twice: encoded twice
    {"note": '"hash":"' + GENESIS + '"'},  # its text inside a string: escaped, not a member
    {"prev": GENESIS, "value": "\ud800", "big": 2**70},  # the fallback encoding
    *({"value": value} for value in HOSTILE.values()),
]


@pytest.mark.parametrize("prev", [GENESIS, "f" * 64])
@pytest.mark.parametrize("entry", SEAL_LINE_ENTRIES)
def test_seal_line_is_seal_and_its_canonical_line(entry: dict[str, Any], prev: str) -> None:
    record, line = seal_line(entry, 3, prev)
    sealed = seal(entry, 3, prev)
    assert record == sealed
    assert list(record) == list(sealed)
    assert line == canonical(sealed)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.just(GENESIS) | st.just("hash"),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["hash", "a", "z", "prev_hash", "v"]) | st.text(max_size=6), children, max_size=3
        )
    ),
    max_leaves=16,
)


@given(
    st.dictionaries(
        st.text(max_size=10).filter(lambda key: key not in {"v", "seq", "prev_hash", "hash"}), _JSON, max_size=6
    ),
    st.integers(min_value=1, max_value=2**63),
    st.sampled_from([GENESIS, "a" * 64]),
)
def test_seal_line_matches_seal_on_any_entry(entry: dict[str, Any], seq: int, prev: str) -> None:
    record, line = seal_line(entry, seq, prev)
    sealed = seal(entry, seq, prev)
    assert record == sealed
    assert line == canonical(sealed)
    assert record_hash(orjson.loads(line)) == record["hash"]


def test_seal_line_refuses_chain_fields() -> None:
    for field in ("v", "seq", "prev_hash", "hash"):
        with pytest.raises(ValueError, match="chain fields"):
            seal_line({field: 1}, 1, GENESIS)

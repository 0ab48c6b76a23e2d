"""The bench's audit floor (``bench/fullpipe.py``, ``FloorAudit``) does what its report says it does: per
call one or two lines of at least 600 bytes, each chained by SHA-256 to the one before, one ``write``
each, and the call's result passed through."""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest
from mcp_types import CallToolResult, TextContent
from tests.conftest import REPO_ROOT


def _fullpipe() -> ModuleType:
    sys.path.insert(0, str(REPO_ROOT / "bench"))
    try:
        return importlib.import_module("fullpipe")
    finally:
        sys.path.remove(str(REPO_ROOT / "bench"))


class _Principal:
    subject = "bench-0123456789abcdef"


class _Context:
    correlation_id = "0123456789abcdef0123456789abcdef"
    principal = _Principal()


class _Call:
    context = _Context()
    kind = "tool"
    name = "echo"
    arguments: dict[str, Any] = {"text": "hello"}


@pytest.mark.parametrize("records", [1, 2])
async def test_the_floor_writes_chained_records_of_mcplane_s_size_one_write_each(
    tmp_path: Path, records: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    fullpipe = _fullpipe()
    floor = fullpipe.FloorAudit(tmp_path / "floor.log", records=records)
    writes: list[bytes] = []
    real_write = os.write

    def write(fd: int, data: bytes) -> int:
        writes.append(data)
        return real_write(fd, data)

    monkeypatch.setattr(fullpipe.os, "write", write)
    result = CallToolResult(content=[TextContent(type="text", text="hello")])

    async def call_next(call: Any) -> Any:
        return result

    for _ in range(3):
        assert await floor(_Call(), call_next) is result
    lines = (tmp_path / "floor.log").read_bytes().splitlines(keepends=True)
    assert lines == writes  # one write per record
    assert len(lines) == 3 * records
    prev = "0" * 64
    for line in lines:
        record = orjson.loads(line)
        assert record["prev_hash"] == prev
        body = line[: line.rindex(b',"hash":')]
        assert record["hash"] == hashlib.sha256(body).hexdigest()
        prev = record["hash"]
    statuses = [orjson.loads(line)["status"] for line in lines]
    assert statuses == (["pending", "ok"] * 3 if records == 2 else ["ok"] * 3)
    assert all(len(line) >= 600 for line in lines)  # about as long as mcplane's records of the same call


def test_the_floor_layers_take_the_audit_slot_and_not_with_mcplane_s_audit() -> None:
    fullpipe = _fullpipe()
    assert fullpipe.parse_layers("auth,authz,ratelimit-lease,audit-floor")[-1] == "audit-floor"
    with pytest.raises(ValueError, match="same slot"):
        fullpipe.parse_layers("audit,audit-floor")
    with pytest.raises(ValueError, match="records is 1 or 2"):
        fullpipe.FloorAudit(Path(os.devnull), records=3)


def test_the_one_record_layer_is_mcplanes_audit_with_pending_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fullpipe = _fullpipe()
    monkeypatch.setenv("MCPLANE_BENCH_AUDIT_DIR", str(tmp_path))
    one = fullpipe.plane_config(fullpipe.parse_layers("audit-one"))
    two = fullpipe.plane_config(fullpipe.parse_layers("audit"))
    assert (one.audit.pending, two.audit.pending) == (False, True)
    assert one.audit.model_dump(exclude={"pending"}) == two.audit.model_dump(exclude={"pending"})
    with pytest.raises(ValueError, match="same slot"):
        fullpipe.parse_layers("audit,audit-one")

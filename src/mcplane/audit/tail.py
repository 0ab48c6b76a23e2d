"""The start-up check of a JSONL log: its tail, held against the latest checkpoint.

A writer runs it before its first append (:meth:`mcplane.audit.jsonl.JsonlSink.verify_at_start`):
the record the checkpoint covers must be where the checkpoint says (that segment, ending at that
byte offset), with that hash, and every record after it, through the later segments, must link
to it. Only the records after the checkpoint are read, not the whole log.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mcplane.audit.checkpoint import ChainBroken, describe, records_text
from mcplane.audit.segments import LogFiles, line_ending_at
from mcplane.audit.verify import parse_row, verify_lines

__all__ = ["check_after", "recent_lines"]


def check_after(
    files: LogFiles, active_fd: int, active_first: int | None, head_seq: int, checkpoint: Mapping[str, Any]
) -> None:
    """Raise :class:`ChainBroken` unless the log holds ``checkpoint``'s record where it says and every
    later record links to it. ``active_first``: the first seq of the active segment (open as ``active_fd``)."""
    seq, digest, where = checkpoint["seq"], checkpoint["hash"], describe(checkpoint)
    if head_seq < seq:
        raise ChainBroken(
            f"{files.name} ends at record {head_seq}, but {where} covers record {seq}: "
            f"{records_text(head_seq + 1, seq)} missing (truncated or deleted)"
        )
    parts: list[tuple[str, bytes, int]] = []  # (file name, bytes after the checkpoint, lines before them)
    if seq == 0:
        parts += [(path.name, path.read_bytes(), 0) for path in files.files()]
    else:
        segment, offset = checkpoint.get("segment"), checkpoint.get("offset")
        if not isinstance(segment, int) or not isinstance(offset, int):
            raise ChainBroken(f"{where} names no segment and offset")
        path = files.path if active_first == segment else files.segment_path(segment)
        try:
            held = active_fd if path == files.path else os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise ChainBroken(
                f"segment {path.name} (records from {segment}, covered by {where}) is missing (deleted)"
            ) from None
        try:
            record = line_ending_at(held, offset)
            row = parse_row(record) if record is not None else None
            if row is None or row.seq != seq or row.hash != digest or not row.intact:
                raise ChainBroken(
                    f"record {seq} in {path.name} does not match {where} (the log was replaced or rewritten)"
                )
            rest = os.pread(held, os.fstat(held).st_size - offset, offset)
            parts.append((path.name, rest, -1))  # counted only if a message needs it
        finally:
            if held != active_fd:
                os.close(held)
        later = [p for first, p in files.sealed() if first > segment]
        if path != files.path and files.path.exists():
            later.append(files.path)
        parts += [(p.name, p.read_bytes(), 0) for p in later]
    lines: list[bytes] = []
    places: list[tuple[int, int]] = []  # (part, line within the part's bytes)
    for number, (_, data, _) in enumerate(parts):
        chunk = data.split(b"\n")[:-1]
        lines += chunk
        places += [(number, k) for k in range(len(chunk))]

    def locate(i: int) -> str:
        name, _, before = parts[places[i][0]]
        if before < 0:
            before = (files.directory / name).read_bytes()[: int(checkpoint["offset"])].count(b"\n")
        return f"{name} line {before + places[i][1] + 1}"

    report = verify_lines(lines, start=(seq, digest), locate=locate)
    if report.problem is not None:
        raise ChainBroken(f"after {where}: {report.problem.message}")


def recent_lines(path: Path, count: int) -> list[bytes]:
    """The last ``count`` complete lines of a checkpoints file, oldest first (none if it is missing). A
    partial last line (a write interrupted by a crash) is left out."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return []
    try:
        size = os.fstat(fd).st_size
        window = 65_536
        while True:
            start = max(0, size - window)
            data = os.pread(fd, size - start, start)
            lines = data[: data.rfind(b"\n") + 1].split(b"\n")[:-1]
            if start > 0:
                lines = lines[1:]  # the first may have begun before the window
            if len(lines) >= count or start == 0:
                return lines[-count:]
            window *= 4
    finally:
        os.close(fd)

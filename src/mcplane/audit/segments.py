"""The files of one JSONL audit log: the active segment, sealed segments, checkpoints, lock, key.

For ``audit.path: /var/log/mcplane/audit.jsonl``::

    audit.jsonl                      the active segment: records are appended here
    audit-000000000001.jsonl         sealed segments, named by the seq of their first record
    audit-000000120001.jsonl
    audit.jsonl.checkpoints          signed checkpoints (see mcplane.audit.checkpoint)
    audit.jsonl.checkpoints.key      the generated checkpoint key, when none is configured (0600)
    audit.jsonl.lock                 what writer processes lock around each append and rotation

A rotation renames the active segment to its sealed name and starts a new one, whose first record
links to the sealed segment's last (``seq`` and ``prev_hash`` go on): the segments together are
one chain.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["AuditFileError", "LogFiles", "discover", "line_ending_at", "read_first_line", "tail_line"]

SEGMENT_DIGITS = 12
_TAIL_CHUNK = 8192
_SEGMENT_NAME = re.compile(rf"^(?P<stem>.+)-(?P<seq>\d{{{SEGMENT_DIGITS},}})(?P<suffix>\.[^.]+)?$")


class AuditFileError(OSError):
    """The audit file cannot be extended safely (a torn or unreadable last line)."""


@dataclass(frozen=True)
class LogFiles:
    path: Path
    """The active segment."""

    @property
    def directory(self) -> Path:
        return self.path.parent

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    @property
    def checkpoints_path(self) -> Path:
        return self.path.with_name(self.path.name + ".checkpoints")

    def _pattern(self) -> re.Pattern[str]:
        stem, suffix = self.path.stem, self.path.suffix
        return re.compile(rf"^{re.escape(stem)}-(\d{{{SEGMENT_DIGITS},}}){re.escape(suffix)}$")

    def segment_path(self, first_seq: int) -> Path:
        """Where the segment whose first record is ``first_seq`` goes when it is sealed."""
        return self.path.with_name(f"{self.path.stem}-{first_seq:0{SEGMENT_DIGITS}d}{self.path.suffix}")

    def sealed(self) -> list[tuple[int, Path]]:
        """``(first seq, path)`` of each sealed segment, oldest first."""
        pattern = self._pattern()
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        found = [(int(match[1]), self.directory / name) for name in names if (match := pattern.match(name))]
        return sorted(found)

    def files(self) -> list[Path]:
        """Every segment in chain order: the sealed ones, then the active one if it exists."""
        paths = [path for _, path in self.sealed()]
        if self.path.exists():
            paths.append(self.path)
        return paths


def discover(target: str | os.PathLike[str]) -> LogFiles:
    """The log a path names: the active segment's path (which may be gone), or a directory holding one log."""
    path = Path(target)
    if not path.is_dir():
        return LogFiles(path)
    logs: set[str] = set()
    for entry in os.listdir(path):
        if entry.startswith("."):
            continue
        if entry.endswith(".checkpoints"):
            logs.add(entry.removesuffix(".checkpoints"))
        elif match := _SEGMENT_NAME.match(entry):
            logs.add(f"{match['stem']}{match['suffix'] or ''}")
        elif entry.endswith(".jsonl"):
            logs.add(entry)
    if not logs:
        raise FileNotFoundError(f"no audit log in {path}")
    if len(logs) > 1:
        raise ValueError(f"{path} holds several audit logs ({', '.join(sorted(logs))}): name one")
    return LogFiles(path / logs.pop())


def _read_exact(fd: int, offset: int, length: int) -> bytes:
    parts: list[bytes] = []
    while length > 0:
        part = os.pread(fd, length, offset)
        if not part:
            break
        parts.append(part)
        offset += len(part)
        length -= len(part)
    return b"".join(parts)


def tail_line(fd: int, size: int) -> bytes:
    """The last line of the first ``size`` bytes (without its newline); ``AuditFileError`` if it is torn."""
    chunk = _TAIL_CHUNK
    while True:
        start = max(0, size - chunk)
        data = _read_exact(fd, start, size - start)
        if not data.endswith(b"\n"):
            raise AuditFileError("the audit file ends in an incomplete line; run `mcplane audit verify` and repair it")
        cut = data.rfind(b"\n", 0, len(data) - 1)
        if cut >= 0 or start == 0:
            return data[cut + 1 : -1]
        chunk *= 4


def line_ending_at(fd: int, offset: int) -> bytes | None:
    """The line whose newline is the byte before ``offset``, or ``None`` if there is none there."""
    size = os.fstat(fd).st_size
    if offset <= 0 or offset > size or _read_exact(fd, offset - 1, 1) != b"\n":
        return None
    return tail_line(fd, offset)


def read_first_line(fd: int) -> bytes | None:
    """The file's first complete line (without its newline), or ``None`` if it has none."""
    chunk, offset, data = _TAIL_CHUNK, 0, b""
    while True:
        part = _read_exact(fd, offset, chunk)
        data += part
        cut = data.find(b"\n")
        if cut >= 0:
            return data[:cut]
        if len(part) < chunk:
            return None
        offset += len(part)
        chunk *= 4

"""The default audit sink: an append-only JSONL file, one canonical record per line.

- **Append-only**: the file is opened ``O_APPEND`` (mode 0600) and only ever grows; a write that
  fails half-way is truncated back so the file never ends in a torn line.
- **Resumes** the chain from the file's last record on start (and whenever the file grew under
  it), reading only the tail.
- **Concurrency**: one lock serializes the calls of a process; on POSIX an exclusive ``flock``
  around each append also lets several processes share one file and still write one chain.
- **fsync policy**: ``"always"`` (every append is on disk before the call goes on; the default),
  ``"interval"`` (at most once per ``fsync_interval`` seconds, and on close: a machine crash can
  lose that window), ``"never"`` (the OS decides).
- **Where the I/O runs**: an append that fsyncs, opens the file or waits for another process's
  ``flock`` runs in a worker thread. Any other append (``"interval"`` between fsyncs,
  ``"never"``) is a few non-blocking syscalls (``stat``, ``flock(LOCK_NB)``, ``write`` into the
  page cache) and runs inline: a thread hop would cost ten times the write.
- **Rotation**: if the path now names a different file (moved away by logrotate), the sink opens
  the new one, which starts its own chain at ``seq`` 1.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.to_thread
import orjson

from mcplane.audit.chain import GENESIS, canonical, seal

if sys.platform != "win32":
    import fcntl

__all__ = ["AuditFileError", "FsyncPolicy", "JsonlSink"]

FsyncPolicy = Literal["always", "interval", "never"]
_TAIL_CHUNK = 8192


class AuditFileError(OSError):
    """The audit file cannot be extended safely (a torn or unreadable last line)."""


class JsonlSink:
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync: FsyncPolicy = "always",
        fsync_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if fsync not in ("always", "interval", "never"):
            raise ValueError(f"fsync must be 'always', 'interval' or 'never', not {fsync!r}")
        self.path = Path(path)
        self.fsync = fsync
        self.fsync_interval = fsync_interval
        self._clock = clock
        self._lock = anyio.Lock(fast_acquire=True)
        self._fd: int | None = None
        self._head: tuple[int, str] | None = None
        self._size = -1
        self._last_sync = clock()
        self._unsynced = False
        self._inline = sys.platform != "win32" and fsync != "always"

    @property
    def description(self) -> str:
        return f"jsonl:{self.path}"

    async def append(self, entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        if not entries:
            return []
        batch = list(entries)
        async with self._lock:
            if self._may_inline():
                records = self._append_sync(batch, inline=True)
                if records is not None:
                    return records
            records = await anyio.to_thread.run_sync(self._append_sync, batch)
            assert records is not None  # only an inline append gives up
            return records

    def append_nowait(self, entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]] | None:
        """:meth:`append` right now, on the caller's thread, or ``None`` (nothing written) when that
        could block: an fsync is due or the policy is ``always``, the file is not open yet or was
        rotated, another append (or process) holds the lock. Raises like :meth:`append` on failure."""
        if not entries:
            return []
        if self._lock.locked() or not self._may_inline():
            return None
        return self._append_sync(list(entries), inline=True)

    async def ping(self) -> None:
        async with self._lock:
            await anyio.to_thread.run_sync(self._open)

    async def read_lines(self) -> list[str]:
        async with self._lock:
            return await anyio.to_thread.run_sync(self._read_sync)

    async def aclose(self) -> None:
        async with self._lock:
            await anyio.to_thread.run_sync(self._close_sync)

    # ------------------------------------------------------------------ worker-thread side
    def _open(self) -> int:
        fd = self._fd
        if fd is not None:
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            self._close_sync()  # rotated or removed: start on the file the path names now
        created = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        if created and self.fsync != "never" and sys.platform != "win32":
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self._fd, self._head, self._size = fd, None, -1
        return fd

    def _append_sync(self, entries: list[Mapping[str, Any]], inline: bool = False) -> list[dict[str, Any]] | None:
        """Append ``entries``. ``inline`` (on the event loop): ``None`` instead of anything that could
        block (reopening a rotated file, another process holding the lock, an fsync that fell due)."""
        if inline:
            fd = self._fd
            try:
                if fd is None or os.stat(self.path).st_ino != os.fstat(fd).st_ino:
                    return None
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # BlockingIOError: another process is appending; FileNotFoundError: rotated away
                return None
        else:
            fd = self._open()
            if sys.platform != "win32":
                fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            size = os.fstat(fd).st_size
            if self._head is None or size != self._size:
                self._head = _read_head(fd, size)
            seq, prev = self._head
            records: list[dict[str, Any]] = []
            data = bytearray()
            for entry in entries:
                record = seal(entry, seq + 1, prev)
                seq, prev = record["seq"], record["hash"]
                records.append(record)
                data += canonical(record) + b"\n"
            try:
                _write_all(fd, bytes(data))
                self._sync(fd, inline)
            except BaseException:
                self._head, self._size = None, -1
                os.ftruncate(fd, size)  # never leave a torn line behind
                raise
            self._head, self._size = (seq, prev), size + len(data)
            return records
        finally:
            if sys.platform != "win32":
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _may_inline(self) -> bool:
        if not self._inline or self._fd is None:
            return False
        return self.fsync != "interval" or self._clock() - self._last_sync < self.fsync_interval

    def _sync(self, fd: int, inline: bool = False) -> None:
        if self.fsync == "never":
            return
        now = self._clock()
        if not inline and (self.fsync == "always" or now - self._last_sync >= self.fsync_interval):
            os.fsync(fd)
            self._last_sync, self._unsynced = now, False
        else:
            self._unsynced = True  # inline: an fsync that fell due meanwhile is left to the next append

    def _read_sync(self) -> list[str]:
        try:
            text = self.path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            return []
        # Split on "\n" only: records may hold U+2028 and friends, which splitlines() would split on.
        return text.removesuffix("\n").split("\n") if text else []

    def _close_sync(self) -> None:
        fd, self._fd, self._head, self._size = self._fd, None, None, -1
        if fd is None:
            return
        try:
            if self._unsynced:
                os.fsync(fd)
                self._unsynced = False
        finally:
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_exact(fd: int, length: int) -> bytes:
    parts: list[bytes] = []
    while length > 0:
        part = os.read(fd, length)
        if not part:
            break
        parts.append(part)
        length -= len(part)
    return b"".join(parts)


def _read_head(fd: int, size: int) -> tuple[int, str]:
    """``(seq, hash)`` of the file's last record; ``(0, GENESIS)`` for an empty file."""
    if size == 0:
        return 0, GENESIS
    chunk = _TAIL_CHUNK
    while True:
        start = max(0, size - chunk)
        os.lseek(fd, start, os.SEEK_SET)  # O_APPEND writes still go to the end
        data = _read_exact(fd, size - start)
        if not data.endswith(b"\n"):
            raise AuditFileError("the audit file ends in an incomplete line; run `mcplane audit verify` and repair it")
        cut = data.rfind(b"\n", 0, len(data) - 1)
        if cut >= 0 or start == 0:
            line = data[cut + 1 : -1]
            break
        chunk *= 4
    try:
        record = orjson.loads(line)
        seq, digest = record["seq"], record["hash"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise AuditFileError("the audit file's last line is not an audit record") from exc
    if not isinstance(seq, int) or not isinstance(digest, str):
        raise AuditFileError("the audit file's last line is not an audit record")
    return seq, digest

"""The default audit sink: an append-only JSONL log, one canonical record per line, in segments.

- **Append-only**: each segment is opened ``O_APPEND`` (mode 0600) and only ever grows; a write
  that fails half-way is truncated back so a segment never ends in a torn line.
- **Concurrency**: one lock serializes the calls of a process; on POSIX an exclusive ``flock`` of
  ``<log>.lock`` around each append and rotation lets several processes share one log and still
  write one chain.
- **Rotation** (``rotate_bytes``, ``rotate_interval``): the active segment is renamed
  ``<stem>-<first seq>.jsonl`` and a new one started; the chain goes on across segments (see
  :mod:`.segments`). Rotate with these settings, not with logrotate: a log that loses records
  under a writer is refused (below).
- **Checkpoints** (see :mod:`.checkpoint`): signed, appended to ``<log>.checkpoints`` (or
  ``checkpoints.location``), with the generated key ``<checkpoints>.key`` when none is given.
- **Verified before it is extended**: before its first append the sink checks the chain's tail
  against the latest checkpoint (the record it covers is there, at its place, with its hash, and
  every later record links to it), and refuses to write (:class:`ChainBroken`) if it is not: a
  truncated, shortened, replaced or deleted log. While it runs, a log whose head goes back below
  a record it saw is refused the same way.
- **fsync policy**: ``"always"`` (every append is on disk before the call goes on; the default),
  ``"interval"`` (at most once per ``fsync_interval`` seconds, and on close), ``"never"`` (the OS
  decides). Whatever the policy, records are on disk before a checkpoint covers them.
- **Where the I/O runs**: an append that fsyncs, opens a file, rotates, writes a checkpoint or
  waits for another process's ``flock`` runs in a worker thread. Any other append is a few
  non-blocking syscalls and runs inline: a thread hop would cost ten times the write.
- **The inline lease**: an inline append that takes the ``flock`` (and checks the segment was not
  rotated by a peer) keeps it for the appends that follow within :data:`LEASE_SECONDS`, in this
  loop turn and the next ones, so each of them is one ``write`` (no peer can append or rotate
  meanwhile). A timer of the event loop releases it :data:`LEASE_SECONDS` after it was taken; it
  is also released before anything goes to a worker thread, and an append that finds it held for
  :data:`LEASE_SECONDS` (the loop was too busy to run the timer) releases it and takes it again.
  Taking it is four syscalls (``flock``, ``fstat``, ``stat``, and the release's ``flock``), which a
  served process pays per call when a call comes each loop turn or so; the lease spreads them over
  the calls of :data:`LEASE_SECONDS`. A peer process that wants the lock meanwhile waits at most
  that long, or until this process's loop gets control back (a tool that blocks the loop makes it
  wait that long), so once a peer is seen writing the log (holding its lock, or the log grew or was
  rotated between two of this sink's appends) the sink appends without a lease for
  :data:`CONTENDED_SECONDS` (one lock per append, as before the lease).
- **Records given as text** (:meth:`JsonlSink.append_parts_nowait`): the audit slot's plain calls
  hand over each record as its canonical text without the chain members; the sink adds them and
  writes the line as an inline append would, or declines whenever that append would do more than
  one ``write`` (the caller then appends the record as a mapping).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.to_thread
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mcplane.audit.chain import GENESIS, canonical, seal_line, seal_parts
from mcplane.audit.checkpoint import (
    RECENT,
    Anchor,
    ChainBroken,
    CheckpointOptions,
    Schedule,
    Signer,
    highest_recent,
    log_checkpoint,
    make_checkpoint,
)
from mcplane.audit.keys import load_or_create_key_file
from mcplane.audit.segments import AuditFileError, LogFiles, read_first_line, tail_line
from mcplane.audit.tail import check_after, recent_lines

if sys.platform != "win32":
    import fcntl

__all__ = ["AuditFileError", "ChainBroken", "FsyncPolicy", "JsonlSink"]

logger = logging.getLogger("mcplane.audit")

FsyncPolicy = Literal["always", "interval", "never"]
_NONE = Anchor(0, GENESIS, None, None, None)
_anchor = tuple.__new__
"""``_anchor(Anchor, (…))``: an ``Anchor`` without its ``__new__``'s Python frame."""
LEASE_SECONDS = 0.002
"""The longest the event loop keeps the log's ``flock`` across inline appends (see the module docstring)."""
CONTENDED_SECONDS = 10.0
"""How long a sink appends without a lease after it saw another process write the log (hold its
lock, append to it or rotate it since this sink's last append)."""


def _seconds(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _record(line: bytes, what: str) -> dict[str, Any]:
    try:
        record: Any = orjson.loads(line)
        if isinstance(record, dict) and isinstance(record.get("seq"), int) and isinstance(record.get("hash"), str):
            return record  # pyright: ignore[reportUnknownVariableType]
    except orjson.JSONDecodeError:
        pass
    raise AuditFileError(f"{what} is not an audit record")


class JsonlSink:
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync: FsyncPolicy = "always",
        fsync_interval: float = 1.0,
        rotate_bytes: int | None = None,
        rotate_interval: float | None = None,
        checkpoints: CheckpointOptions | None = CheckpointOptions(),
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if fsync not in ("always", "interval", "never"):
            raise ValueError(f"fsync must be 'always', 'interval' or 'never', not {fsync!r}")
        self.files = LogFiles(Path(path))
        self.path = self.files.path
        self.fsync = fsync
        self.fsync_interval = fsync_interval
        self.rotate_bytes = rotate_bytes
        self.rotate_interval = rotate_interval
        self._clock = clock
        self._wall = wall
        location = checkpoints.location if checkpoints is not None else None
        self.checkpoints_path = Path(location) if location else self.files.checkpoints_path
        self.key_path = self.checkpoints_path.with_name(self.checkpoints_path.name + ".key")
        self._signer: Signer | None = None
        self._schedule: Schedule | None = None
        if checkpoints is not None:
            self._signer = Signer(checkpoints.key, self._default_key, checkpoints.trusted_keys)
            self._schedule = Schedule(checkpoints.every, checkpoints.interval, clock)
        self._lock = anyio.Lock(fast_acquire=True)
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._cp_fd: int | None = None
        self._head: Anchor | None = None
        self._size = -1
        self._segment: tuple[int, float | None] | None = None
        """``(first seq, its time)`` of the open active segment, once known (it has records)."""
        self._seen = 0
        """The highest ``seq`` this sink saw on disk: the log must never end below it."""
        self._verified = checkpoints is None
        self.broken: str | None = None
        """Why the chain cannot be extended (``None``: it can, or was not checked yet)."""
        self._last: Anchor | None = None
        self._opened = False
        self._first_time: str | None = None
        self._dirty = False
        self._last_sync = clock()
        self._inline = sys.platform != "win32" and fsync != "always"
        self._interval = fsync == "interval"
        self._rotates = rotate_bytes is not None or rotate_interval is not None
        self._lease_since: float | None = None
        """When the inline lease on the ``flock`` was taken (``None``: not held)."""
        self._lease_timer: asyncio.TimerHandle | None = None
        """The loop's timer that releases the lease."""
        self._lease_off_until = float("-inf")
        """No lease before this time (``clock``): a peer process was seen appending."""

    @property
    def description(self) -> str:
        return f"jsonl:{self.path}"

    @property
    def generated_key(self) -> bool:
        """Checkpoints are signed with the key generated beside them (no key was configured)."""
        return self._signer is not None and self._signer.generated

    @property
    def key_location(self) -> str:
        """Where a generated checkpoint key is kept (named in the warning that one was generated)."""
        return str(self.key_path)

    async def append(self, entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        if not entries:
            return []
        batch = list(entries)
        async with self._lock:
            if self._may_inline():
                records = self._append_sync(batch, inline=True)
                if records is not None:
                    return records
            self._end_lease()
            records = await anyio.to_thread.run_sync(self._append_sync, batch)
            assert records is not None  # only an inline append gives up
            return records

    def append_nowait(self, entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]] | None:
        """:meth:`append` right now, on the caller's thread, or ``None`` (nothing written) when that
        could block: an fsync, a rotation or a checkpoint is due or the policy is ``always``, the
        file is not open yet or was rotated, another append (or process) holds the lock. Raises
        like :meth:`append` on failure."""
        if not entries:
            return []
        if self._lock.locked() or not self._may_inline():
            return None
        return self._append_sync(list(entries), inline=True)

    def append_parts_nowait(self, head: str, middle: str, rest: str, tail: str, time: str) -> bool:
        """Append one record given as its canonical text cut at its chain members (see
        :func:`~mcplane.audit.chain.seal_parts`; ``time``: its ``time``) right now, on the caller's
        thread, as the one ``write`` of a plain inline append; ``False`` (nothing written, nothing
        changed) whenever :meth:`append_nowait` would not append or its append would do more than
        that: the chain's head must be read again (a peer appended), a rotation or a checkpoint is
        due, the log's first checkpoint (``open``) is still to be written, the head is not one
        ``seal_parts`` writes after. Raises like :meth:`append` on failure.

        The same bookkeeping as :meth:`_append_locked`'s (the head, the size, the segment, the
        checkpoint schedule, the lease), so this and :meth:`append` extend one chain in any order.
        """
        fd = self._fd
        if fd is None or not self._inline or not self._verified or self._lock.locked():
            return False
        now = self._clock()
        if self._interval and now - self._last_sync >= self.fsync_interval:
            return False
        since = self._lease_since
        if since is not None and now - since < LEASE_SECONDS:
            size, fresh = self._size, False
        else:
            if since is not None:
                self._end_lease()  # held long enough: taken again, as a peer waiting for it may be first
            taken = self._lock_inline(fd)
            if taken is None:
                return False
            size, fresh = taken, True
        anchor = self._head
        schedule = self._schedule
        sealed = None
        seq = 0
        try:
            if not (
                anchor is None
                or size != self._size
                or (self._rotates and self._rotation_due(fd, size))
                or (schedule is not None and (not self._opened or schedule.due(1)))
            ):
                seq = anchor.seq + 1
                sealed = seal_parts(head, middle, rest, tail, seq, anchor.hash)
        except BaseException:  # reading the segment's first line for the rotation test failed
            self._release_inline(fresh)
            raise
        if sealed is None:  # left to the general path, which does what this one does not
            if fresh:
                self._unlock_sync()
            return False
        digest, line = sealed
        try:
            self._write_data(fd, line, size, sync=False)
        except BaseException:
            self._release_inline(fresh)
            raise
        # It was not due with this record: one that falls due now is written by the next append.
        self._advance(size, size + len(line), seq, time, seq, digest, time, 1)
        if fresh and not self._keep_lease():
            self._unlock_sync()
        return True

    def _release_inline(self, fresh: bool) -> None:
        """After a failed inline append: the ``flock`` it took (``fresh``), else the lease it used."""
        if fresh:
            self._unlock_sync()
        else:
            self._end_lease()

    def _lock_inline(self, fd: int) -> int | None:
        """Take the ``flock`` without waiting and check ``fd`` is still the active segment: its size, the
        lock held; ``None``: not taken (another process holds it, or rotated the log)."""
        lock_fd = self._lock_fd
        if lock_fd is None:
            return None
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # BlockingIOError: another process is appending
            self._peer_seen()
            return None
        try:
            opened = os.fstat(fd)
            if os.stat(self.path).st_ino == opened.st_ino:
                if opened.st_size != self._size and self._size >= 0:
                    self._peer_seen()  # it appended since this sink did
                return opened.st_size
        except FileNotFoundError:  # rotated away
            pass
        except BaseException:
            self._unlock_sync()
            raise
        self._peer_seen()  # it rotated the log
        self._unlock_sync()
        return None

    async def ping(self) -> None:
        """Raise unless the log can be extended now: the file opens and the chain checks out."""
        async with self._lock:
            self._end_lease()
            await anyio.to_thread.run_sync(self._ping_sync)

    def verify_at_start(self) -> str | None:
        """Check the chain's tail against the latest checkpoint now, on this thread; why it is broken, or
        ``None``. A log that cannot be read now (``OSError``) is checked again before the first append."""
        try:
            self._ping_sync()
        except (ChainBroken, AuditFileError) as exc:
            self._close_sync()  # its files are opened again, and the chain checked again, if it is used
            return str(exc)
        except OSError as exc:
            logger.warning("audit: cannot check %s at start (%s); checking before the first append", self.path, exc)
        return None

    async def checkpoint(self) -> None:
        """Write a checkpoint now if one is due (the ``interval`` passed with records not yet covered)."""
        if self._schedule is None or self._schedule.due() is None or self._last is None:
            return
        async with self._lock:
            self._end_lease()
            await anyio.to_thread.run_sync(self._checkpoint_sync)

    async def read_lines(self) -> list[str]:
        async with self._lock:
            return await anyio.to_thread.run_sync(self._read_sync)

    async def aclose(self) -> None:
        async with self._lock:
            self._end_lease()
            await anyio.to_thread.run_sync(self._close_sync)

    # ------------------------------------------------------------------ worker-thread side
    def _end_lease(self) -> None:
        """Release the inline lease on the ``flock``, if held (on the event loop's thread)."""
        if self._lease_since is not None:
            self._lease_since = None
            timer = self._lease_timer
            if timer is not None:
                self._lease_timer = None
                timer.cancel()
            self._unlock_sync()

    def _lock_sync(self) -> None:
        if sys.platform == "win32":
            return
        self._end_lease()  # already released by whoever sent this to a worker thread; never left held
        if self._lock_fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.files.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)

    def _unlock_sync(self) -> None:
        if sys.platform != "win32" and self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _open(self) -> int:
        fd = self._fd
        if fd is not None:
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            self._drop_fd()  # rotated (by another process) or removed: go on with the file the path names now
        created = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        if created and self.fsync != "never":
            self._sync_directory()
        self._fd, self._head, self._size, self._segment = fd, None, -1, None
        return fd

    def _sync_directory(self) -> None:
        if sys.platform == "win32":
            return
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _ping_sync(self) -> None:
        self._lock_sync()
        try:
            fd = self._open()
            if not self._verified:
                self._verify_locked(fd)
        finally:
            self._unlock_sync()

    def _append_sync(self, entries: list[Mapping[str, Any]], inline: bool = False) -> list[dict[str, Any]] | None:
        """Append ``entries``. ``inline`` (on the event loop): ``None`` instead of anything that could
        block (reopening a rotated file, another process holding the lock, an fsync, rotation or
        checkpoint that fell due)."""
        if inline:
            fd = self._fd
            if fd is None or self._lock_fd is None or not self._verified:
                return None
            since = self._lease_since
            if since is not None:
                if self._clock() - since < LEASE_SECONDS:
                    return self._append_leased(fd, entries)
                self._end_lease()  # held long enough: taken again below, as a peer waiting for it may be first
            size = self._lock_inline(fd)
            if size is None:
                return None
            records = None
            try:
                records = self._append_locked(fd, entries, inline=True, size=size)
                return records
            finally:
                if records is None or not self._keep_lease():
                    self._unlock_sync()
        self._lock_sync()
        try:
            return self._append_locked(self._open(), entries, inline=False)
        finally:
            self._unlock_sync()

    def _peer_seen(self) -> None:
        """Another process writes this log: no lease for a while (it would make the peer wait a loop turn)."""
        self._lease_off_until = self._clock() + CONTENDED_SECONDS

    def _keep_lease(self) -> bool:
        """Keep the ``flock`` after an inline append, to be released by a loop timer :data:`LEASE_SECONDS` on."""
        now = self._clock()
        if now < self._lease_off_until:
            return False
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on an asyncio loop: nothing would release it
            return False
        self._lease_timer = loop.call_later(LEASE_SECONDS, self._end_lease)
        self._lease_since = now
        return True

    def _append_leased(self, fd: int, entries: list[Mapping[str, Any]]) -> list[dict[str, Any]] | None:
        """An inline append under the lease: no peer appended or rotated since it was taken."""
        records = None
        try:
            records = self._append_locked(fd, entries, inline=True, size=self._size)
            return records
        finally:
            if records is None:  # failed, or something that may block fell due
                self._end_lease()

    def _append_locked(
        self, fd: int, entries: list[Mapping[str, Any]], inline: bool, size: int | None = None
    ) -> list[dict[str, Any]] | None:
        """``size``: the file's size if the caller has just read it under the lock."""
        if not self._verified:
            self._verify_locked(fd)
            size = None
        if size is None:
            size = os.fstat(fd).st_size
        if self._head is None or size != self._size:
            self._load_head(fd, size)
        rotate = self._rotates and self._rotation_due(fd, size)
        schedule = self._schedule
        if inline and (rotate or (schedule is not None and (not self._opened or schedule.due(len(entries))))):
            return None
        if rotate:
            fd, size = self._rotate(fd, size), 0
        head = self._head
        assert head is not None
        if schedule is not None and not self._opened:
            self._emit(head, "open")
            self._opened = True
        seq, prev = head.seq, head.hash
        records: list[dict[str, Any]] = []
        lines: list[bytes] = []
        for entry in entries:
            record, line = seal_line(entry, seq + 1, prev)
            seq, prev = record["seq"], record["hash"]
            records.append(record)
            lines.append(line)
        lines.append(b"")
        data = b"\n".join(lines)
        # Inline: an fsync that fell due is left to the next append in a thread, or to close.
        self._write_data(fd, data, size, sync=not inline)
        first = records[0]
        last = self._advance(
            size, size + len(data), first["seq"], _time_of(first), seq, prev, _time_of(records[-1]), len(records)
        )
        if schedule is not None:
            # Inline, it was not due a moment ago: one that falls due now is written by the next append.
            reason = None if inline else schedule.due()
            if reason is not None:
                self._emit_safely(last, reason)
        return records

    def _write_data(self, fd: int, data: bytes, size: int, *, sync: bool) -> None:
        """Write ``data`` (whole lines) at the end of the active segment, ``size`` bytes long before it, and
        fsync it if ``sync``; on failure the file is cut back to ``size`` (never a torn line) and the head
        is read again by the next append."""
        try:
            written = os.write(fd, data)
            if written != len(data):
                _write_all(fd, data[written:])
            self._dirty = True
            if sync:
                self._sync(fd)
        except BaseException:
            self._head, self._size = None, -1
            os.ftruncate(fd, size)
            raise

    def _advance(
        self,
        size: int,
        end: int,
        first_seq: int,
        first_time: str | None,
        seq: int,
        digest: str,
        time: str | None,
        count: int,
    ) -> Anchor:
        """After ``count`` records (``first_seq`` … ``seq``, the last with hash ``digest`` and ``time``) were
        written to a segment ``size`` bytes long, now ``end``: the head, the size, the segment, the
        checkpoint schedule; the new head."""
        if size == 0:
            self._segment = (first_seq, _seconds(first_time))
        segment = self._segment
        head = self._head = self._last = _anchor(
            Anchor, (seq, digest, segment[0] if segment is not None else None, end, time)
        )
        self._size, self._seen = end, seq
        if self._first_time is None and first_seq == 1:
            self._first_time = first_time
        if self._schedule is not None:
            self._schedule.add(count)
        return head

    def _load_head(self, fd: int, size: int) -> None:
        """Read the chain's head: the active segment's last record, else the newest sealed segment's."""
        if size > 0:
            record = _record(tail_line(fd, size), "the audit file's last line")
            first = self._segment_info(fd, size)
            head = Anchor(record["seq"], record["hash"], first[0] if first else None, size, _time_of(record))
        else:
            head = self._sealed_head()
        if head.seq < self._seen:
            raise self._break(
                f"{self.path.name} now ends at record {head.seq}, but record {self._seen} was written "
                "(records deleted or the log replaced while it was in use)"
            )
        self._head, self._size, self._seen = head, size, head.seq

    def _sealed_head(self) -> Anchor:
        sealed = self.files.sealed()
        if not sealed:
            return _NONE
        first, path = sealed[-1]
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            record = _record(tail_line(fd, size), f"the last line of {path.name}")
        finally:
            os.close(fd)
        return Anchor(record["seq"], record["hash"], first, size, _time_of(record))

    def _segment_info(self, fd: int, size: int) -> tuple[int, float | None] | None:
        if size == 0:
            return None
        if self._segment is None:
            line = read_first_line(fd)
            if line is None:
                return None
            record = _record(line, "the audit file's first line")
            self._segment = (record["seq"], _seconds(_time_of(record)))
        return self._segment

    def _rotation_due(self, fd: int, size: int) -> bool:
        if size == 0:
            return False
        if self.rotate_bytes is not None and size >= self.rotate_bytes:
            return True
        if self.rotate_interval is not None:
            info = self._segment_info(fd, size)
            if info is not None and info[1] is not None:
                return int(info[1] // self.rotate_interval) != int(self._wall() // self.rotate_interval)
        return False

    def _rotate(self, fd: int, size: int) -> int:
        """Seal the active segment under its first record's seq and open a new one (the lock is held)."""
        info = self._segment_info(fd, size)
        head = self._head
        assert info is not None
        assert head is not None
        target = self.files.segment_path(info[0])
        if target.exists():
            raise AuditFileError(f"cannot rotate {self.path.name}: {target.name} exists already")
        os.fsync(fd)
        self._dirty = False
        if self._signer is not None:
            self._emit(Anchor(head.seq, head.hash, info[0], size, head.last_time), "rotation")
        os.rename(self.path, target)
        self._sync_directory()
        self._drop_fd()
        fd = self._open()
        self._head, self._size = head, 0
        logger.info("audit: rotated %s to %s", self.path.name, target.name)
        return fd

    def _emit(self, anchor: Anchor, reason: str) -> None:
        """Sign and append a checkpoint for ``anchor`` once the records it covers are on disk (lock held)."""
        assert self._signer is not None
        assert self._schedule is not None
        if self._dirty and self._fd is not None:
            os.fsync(self._fd)
            self._dirty, self._last_sync = False, self._clock()
        if self._first_time is None and anchor.seq > 0:
            self._first_time = self._read_first_time()
        body = make_checkpoint(anchor, log=self.path.name, first_time=self._first_time, reason=reason, at=self._wall())
        checkpoint = self._signer.sign(body)
        if self._cp_fd is None:
            created = not self.checkpoints_path.exists()
            self.checkpoints_path.parent.mkdir(parents=True, exist_ok=True)
            self._cp_fd = os.open(self.checkpoints_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            if created and self.fsync != "never":
                self._sync_directory()
        size = os.fstat(self._cp_fd).st_size
        if size and os.pread(self._cp_fd, 1, size - 1) != b"\n":
            self._drop_partial_line(self._cp_fd, size)
        _write_all(self._cp_fd, canonical(checkpoint) + b"\n")
        if self.fsync != "never":
            os.fsync(self._cp_fd)
        self._schedule.done()
        log_checkpoint(self.description, checkpoint)

    def _drop_partial_line(self, fd: int, size: int) -> None:
        """Cut the partial line a crash left at the end of the checkpoints file (a checkpoint write that
        never finished, so no checkpoint): a line that is not a checkpoint is otherwise a sign of tampering."""
        start = max(0, size - 65_536)
        data = os.pread(fd, size - start, start)
        keep = start + data.rfind(b"\n") + 1 if b"\n" in data else 0
        logger.warning("audit: %s ended in an interrupted write; cut its %d bytes", self.checkpoints_path, size - keep)
        os.ftruncate(fd, keep)

    def _emit_safely(self, anchor: Anchor, reason: str) -> None:
        """A checkpoint after records were written: a failure is logged and retried later, never raised
        (the records are written; raising would have the writer write them again)."""
        try:
            self._emit(anchor, reason)
        except Exception:
            logger.exception("audit: could not write a checkpoint to %s; retrying later", self.checkpoints_path)

    def _checkpoint_sync(self) -> None:
        if self._schedule is None or self._last is None or self._schedule.due() is None:
            return
        self._lock_sync()
        try:
            self._emit_safely(self._last, "interval")
        finally:
            self._unlock_sync()

    def _read_first_time(self) -> str | None:
        files = self.files.files()
        if not files:
            return None
        fd = os.open(files[0], os.O_RDONLY)
        try:
            line = read_first_line(fd)
        finally:
            os.close(fd)
        try:
            return _time_of(orjson.loads(line)) if line else None
        except (orjson.JSONDecodeError, AttributeError):
            return None

    def _default_key(self) -> Ed25519PrivateKey:
        key, created = load_or_create_key_file(self.key_path)
        if created:
            logger.warning("audit: generated the checkpoint key %s", self.key_path)
        return key

    def _break(self, reason: str) -> ChainBroken:
        self.broken, self._verified = reason, False
        return ChainBroken(reason)

    def _verify_locked(self, fd: int) -> None:
        """Check the tail of the chain against the latest checkpoint (the lock is held)."""
        assert self._signer is not None
        self._load_head(fd, os.fstat(fd).st_size)
        head = self._head
        assert head is not None
        keyring = self._signer.keyring()
        name = self.checkpoints_path.name
        try:
            checkpoint = highest_recent(recent_lines(self.checkpoints_path, RECENT), keyring, name)
        except ChainBroken as exc:
            raise self._break(exc.reason) from None
        if checkpoint is None:
            if head.seq > 0:
                raise self._break(
                    f"{self.path.name} holds records up to {head.seq} but {name} has no checkpoint (deleted, or the "
                    "log predates checkpoints: check it with `mcplane audit verify --no-checkpoints`, then start a "
                    "new log)"
                )
        else:
            active = self._segment_info(fd, os.fstat(fd).st_size)
            try:
                check_after(self.files, fd, active[0] if active else None, head.seq, checkpoint)
            except ChainBroken as exc:
                raise self._break(exc.reason) from None
            first_time = checkpoint.get("first_time")
            self._first_time = first_time if isinstance(first_time, str) else None
        self._verified, self.broken = True, None

    def _sync(self, fd: int) -> None:
        if self.fsync == "never":
            return
        now = self._clock()
        if self.fsync == "always" or now - self._last_sync >= self.fsync_interval:
            os.fsync(fd)
            self._last_sync, self._dirty = now, False

    def _may_inline(self) -> bool:
        if not self._inline or self._fd is None or not self._verified:
            return False
        return self.fsync != "interval" or self._clock() - self._last_sync < self.fsync_interval

    def _read_sync(self) -> list[str]:
        lines: list[str] = []
        for path in self.files.files():
            try:
                text = path.read_bytes().decode("utf-8")
            except FileNotFoundError:
                continue
            # Split on "\n" only: records may hold U+2028 and friends, which splitlines() would split on.
            lines += text.removesuffix("\n").split("\n") if text else []
        return lines

    def _drop_fd(self) -> None:
        fd, self._fd, self._head, self._size, self._segment = self._fd, None, None, -1, None
        if fd is None:
            return
        try:
            if self._dirty and self.fsync != "never":
                os.fsync(fd)
        finally:
            self._dirty = False
            os.close(fd)

    def _close_sync(self) -> None:
        try:
            schedule, last = self._schedule, self._last
            if schedule is not None and last is not None and schedule.pending and self._verified:
                self._lock_sync()
                try:
                    self._emit_safely(last, "shutdown")
                finally:
                    self._unlock_sync()
        finally:
            try:
                self._drop_fd()
            finally:
                for fd in (self._cp_fd, self._lock_fd):
                    if fd is not None:
                        os.close(fd)
                self._cp_fd = self._lock_fd = None
                self._opened, self._last = False, None
                self._verified = self._signer is None


def _time_of(record: Mapping[str, Any]) -> str | None:
    value = record.get("time")
    return value if isinstance(value, str) else None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]

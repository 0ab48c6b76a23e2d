"""The stdio input cut into lines as its bytes arrive (``Lines``), against the stream reader it replaced."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from mcplane.transports.pump import Decoded
from mcplane.transports.stdio import _TOO_LARGE, Lines, _Failed

LIMIT = 64
TOO_LARGE = "<too large>"


async def reference(chunks: list[bytes], limit: int) -> list[Any]:
    """What the transport read from ``chunks`` with ``asyncio.StreamReader`` (before ``Lines``)."""
    reader = asyncio.StreamReader(limit=limit)
    for chunk in chunks:
        reader.feed_data(chunk)
    reader.feed_eof()
    out: list[Any] = []
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            line = exc.partial
            if not line.strip():
                return out
        except asyncio.LimitOverrunError:
            while True:  # drop the rest of the line, up to and including its newline
                try:
                    await reader.readuntil(b"\n")
                    break
                except asyncio.LimitOverrunError as exc:
                    await reader.readexactly(exc.consumed)
                except asyncio.IncompleteReadError:
                    break
            out.append(TOO_LARGE)
            continue
        if line.strip():
            out.append(line.rstrip(b"\n"))


async def drained(lines: Lines) -> list[Any]:
    out: list[Any] = []
    while (item := await lines.next()) is not None:
        out.append(TOO_LARGE if item is _TOO_LARGE else item)
    return out


def never_taken(line: bytes) -> Decoded | None:
    raise AssertionError("taken before the reader was ready")


def cut(data: bytes, rng: random.Random) -> list[bytes]:
    chunks: list[bytes] = []
    start = 0
    while start < len(data):
        size = rng.choice((1, 2, 3, 7, 30, 65, 200, 1000))
        chunks.append(data[start : start + size])
        start += size
    return chunks


def sample(rng: random.Random) -> bytes:
    pieces = [
        b'{"id":1}',
        b"",
        b"   ",
        b"\r",
        b"x" * (LIMIT - 1),
        b"x" * LIMIT,
        b"x" * (LIMIT + 1),
        b"y" * (3 * LIMIT),
        b"not json",
    ]
    body = b"\n".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
    return body + rng.choice((b"", b"\n", b"\n\n", b"tail", b"z" * (2 * LIMIT)))


@pytest.mark.parametrize("seed", range(60))
async def test_lines_are_what_the_stream_reader_read(seed: int) -> None:
    rng = random.Random(seed)
    data = sample(rng)
    chunks = cut(data, rng)
    lines = Lines(LIMIT, never_taken)
    for chunk in chunks:
        lines.data_received(chunk)
    lines.feed_eof()
    assert await drained(lines) == await reference(chunks, LIMIT)


async def test_a_line_is_taken_in_the_callback_that_read_it() -> None:
    """No hop through the reading task: the hot path gets the line inside ``data_received``."""
    taken: list[bytes] = []

    def take_now(line: bytes) -> Decoded | None:
        taken.append(line)
        return None

    lines = Lines(LIMIT, take_now)
    lines.direct = True
    lines.data_received(b'{"id":1}\n{"id"')
    assert taken == [b'{"id":1}']
    lines.data_received(b":2}\n\n")
    assert taken == [b'{"id":1}', b'{"id":2}']
    lines.feed_eof()
    assert await lines.next() is None


async def test_lines_after_one_left_to_the_reader_wait_for_it_in_order() -> None:
    taken: list[bytes] = []

    def take_now(line: bytes) -> Decoded | None:
        taken.append(line)
        return Decoded(line) if line == b"sdk" else None

    lines = Lines(LIMIT, take_now)
    lines.direct = True
    lines.data_received(b"hot1\nsdk\nhot2\n")
    assert taken == [b"hot1", b"sdk"]  # hot2 is not taken ahead of the frame left to the reader
    first = await lines.next()
    assert isinstance(first, Decoded)
    assert first.value == b"sdk"
    lines.data_received(b"hot3\n")  # the reader is still busy with "sdk": hot3 queues behind hot2
    assert taken == [b"hot1", b"sdk"]
    assert await lines.next() == b"hot2"
    assert await lines.next() == b"hot3"
    lines.data_received(b"hot4\n")  # still busy with hot3 until it asks for the next line
    lines.feed_eof()
    assert await lines.next() == b"hot4"
    assert await lines.next() is None


async def test_lines_before_the_reader_is_ready_wait_for_it() -> None:
    lines = Lines(LIMIT, never_taken)
    lines.data_received(b"a\nb\n")
    lines.direct = True
    assert await lines.next() == b"a"
    assert await lines.next() == b"b"


async def test_the_reader_is_woken_by_a_line_left_to_it() -> None:
    lines = Lines(LIMIT, lambda line: Decoded(line))
    lines.direct = True
    waiting = asyncio.ensure_future(lines.next())
    await asyncio.sleep(0)
    assert not waiting.done()
    lines.data_received(b"x\n")
    item = await asyncio.wait_for(waiting, 5)
    assert isinstance(item, Decoded)
    assert item.value == b"x"


async def test_a_failure_while_taking_reaches_the_reader() -> None:
    def take_now(line: bytes) -> Decoded | None:
        raise RuntimeError("boom")

    lines = Lines(LIMIT, take_now)
    lines.direct = True
    lines.data_received(b"x\n")
    item = await lines.next()
    assert isinstance(item, _Failed)
    assert str(item.error) == "boom"


class FakeTransport(asyncio.ReadTransport):
    def __init__(self) -> None:
        super().__init__()
        self.paused = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


async def test_reading_pauses_while_too_much_waits() -> None:
    lines = Lines(LIMIT, never_taken)
    transport = FakeTransport()
    lines.connection_made(transport)
    line = b"z" * (LIMIT // 2)
    for _ in range(4):
        lines.data_received(line + b"\n")
    assert not transport.paused  # exactly twice the limit waits
    lines.data_received(line + b"\n")
    assert transport.paused
    await lines.next()
    await lines.next()
    assert transport.paused  # three halves of the limit still wait
    await lines.next()
    assert not transport.paused


async def test_the_end_of_input_ends_reading_and_later_bytes_are_ignored() -> None:
    lines = Lines(LIMIT, never_taken)
    lines.data_received(b"last")
    lines.connection_lost(None)
    lines.data_received(b"late\n")
    assert await drained(lines) == [b"last"]


async def test_a_broken_input_fails_the_reader() -> None:
    lines = Lines(LIMIT, never_taken)
    lines.connection_lost(OSError("gone"))
    item = await lines.next()
    assert isinstance(item, _Failed)
    assert str(item.error) == "gone"
    assert await lines.next() is None

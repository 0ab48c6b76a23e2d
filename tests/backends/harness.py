"""Helpers for the backend tests: moving time for each implementation, and a private redis-server.

The contract suites run one test body against every implementation. Time is moved with
``advance(seconds)``: the memory backends read a :class:`ManualClock`; for Redis,
:class:`RedisTime` moves the stored state back instead (GCRA arrival times and every PX
expiry under the test's prefix), which is what Redis would hold after ``seconds`` had passed.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from redis.asyncio import Redis

from mcplane.backends import ManualClock

Advance = Callable[[float], Awaitable[None]]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class Harness:
    """What a contract test gets: the implementation under test and a way to move time."""

    impl: Any
    advance: Advance
    name: str


def memory_advance(clock: ManualClock) -> Advance:
    async def advance(seconds: float) -> None:
        clock.advance(seconds)

    return advance


class RedisTime:
    """Moves this test's Redis state ``seconds`` into the past, as if the clock had advanced."""

    def __init__(self, client: Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    async def __call__(self, seconds: float) -> None:
        shift = round(seconds * 1000)
        async for key in self.client.scan_iter(match=self.prefix + "*", count=1000):
            ttl = int(await self.client.pttl(key))
            if ttl >= 0 and ttl - shift <= 0:
                await self.client.delete(key)
                continue
            if key.startswith((self.prefix + "rl:").encode()):  # a GCRA arrival time, in Redis ms
                tat = float(await self.client.get(key) or 0)
                await self.client.set(key, f"{tat - shift:.3f}", keepttl=True)
            if ttl >= 0:
                await self.client.pexpire(key, ttl - shift)


class PrivateRedis:
    """A ``redis-server`` of the test's own, on a free port, that the test may stop and start again."""

    def __init__(self, binary: str, port: int) -> None:
        self.binary = binary
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def spawn(self) -> subprocess.Popen[bytes]:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(
            [self.binary, *args, "--daemonize", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        return self.proc

    async def start(self) -> None:
        """Start the server and wait (polling, at most 10 s) until it answers PING."""
        proc = self.spawn()
        with anyio.fail_after(10):
            while not redis_answers("127.0.0.1", self.port):
                assert proc.poll() is None, f"redis-server exited with {proc.returncode}"
                await anyio.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

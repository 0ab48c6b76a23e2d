"""Helpers for the backend tests: moving time for each implementation, and a private redis-server.

The contract suites run one test body against every implementation. Time is moved with
``advance(seconds)``: the memory backends read a :class:`ManualClock`; for Redis,
:class:`RedisTime` moves the stored state back instead (GCRA arrival times and every PX
expiry under the test's prefix), which is what Redis would hold after ``seconds`` had passed.
"""

from __future__ import annotations

import random
import socket
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from redis.asyncio import Redis

from mcplane.backends import ManualClock

Advance = Callable[[float], Awaitable[None]]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too (and below 65536)."""
    for _ in range(200):
        port = random.randint(20000, 55000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free pair of ports for a cluster node")


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
    """A ``redis-server`` of the test's own, on a free port, that the test may stop and start again.

    ``extra`` are more server arguments (``--cluster-enabled yes``); ``workdir`` is where the
    server may write (cluster node files, a sentinel's rewritten config).
    """

    def __init__(
        self,
        binary: str,
        port: int,
        *,
        extra: Sequence[str] = (),
        workdir: Path | None = None,
        config: Path | None = None,
    ) -> None:
        self.binary = binary
        self.port = port
        self.extra = list(extra)
        self.workdir = workdir
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def spawn(self) -> subprocess.Popen[bytes]:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if self.workdir is not None:
            args += ["--dir", str(self.workdir)]
        self.proc = subprocess.Popen(
            [self.binary, *([str(self.config)] if self.config else []), *args, "--daemonize", "no", *self.extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.workdir,
        )
        return self.proc

    async def start(self) -> None:
        """Start the server and wait (polling, at most 10 s) until it answers PING."""
        proc = self.spawn()
        with anyio.fail_after(10):
            while not redis_answers("127.0.0.1", self.port):
                assert proc.poll() is None, f"redis-server exited with {proc.returncode}"
                await anyio.sleep(0.02)

    def start_sync(self, timeout: float = 10.0) -> None:
        """:meth:`start` for session fixtures, which run outside an event loop."""
        proc = self.spawn()
        deadline = time.monotonic() + timeout
        while not redis_answers("127.0.0.1", self.port):
            assert proc.poll() is None, f"redis-server exited with {proc.returncode}"
            assert time.monotonic() < deadline, f"redis-server on port {self.port} did not answer"
            try:
                proc.wait(timeout=0.02)  # returns early if the server exits
            except subprocess.TimeoutExpired:
                pass

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


def command(port: int, *args: str) -> bytes:
    """One command to a Redis (or sentinel) on ``port``, answered as raw RESP (the test only greps it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        payload = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
        sock.sendall(payload.encode())
        data = b""
        sock.settimeout(5)
        while not data.endswith(b"\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def wait_for(probe: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll ``probe`` (a cheap local check) every 50 ms until it holds, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    event = threading.Event()
    while not probe():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout:g} s"
        event.wait(0.05)


@dataclass
class Cluster:
    """Three master ``redis-server`` processes joined by ``redis-cli --cluster create``."""

    nodes: list[PrivateRedis]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_cluster(binary: str, cli: str, workdir: Path, size: int = 3) -> Cluster:
    nodes: list[PrivateRedis] = []
    cluster = Cluster(nodes)
    try:
        for i in range(size):
            home = workdir / f"node{i}"
            home.mkdir()
            node = PrivateRedis(binary, free_cluster_port(), extra=["--cluster-enabled", "yes"], workdir=home)
            node.extra += ["--cluster-config-file", str(home / "nodes.conf"), "--cluster-node-timeout", "5000"]
            nodes.append(node)
            node.start_sync()
        addresses = [f"127.0.0.1:{node.port}" for node in nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        wait_for(
            lambda: all(b"cluster_state:ok" in command(node.port, "CLUSTER", "INFO") for node in nodes),
            "the cluster reaching cluster_state:ok",
        )
    except BaseException:
        cluster.stop()
        raise
    return cluster


@dataclass
class SentinelSetup:
    """One master and one sentinel watching it as ``service``."""

    master: PrivateRedis
    sentinel: PrivateRedis
    service: str = "mymaster"

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{self.service}/0"

    def stop(self) -> None:
        self.sentinel.stop()
        self.master.stop()


def start_sentinel(binary: str, workdir: Path, service: str = "mymaster") -> SentinelSetup:
    master = PrivateRedis(binary, free_port(), workdir=workdir)
    master.start_sync()
    conf = workdir / "sentinel.conf"
    port = free_port()
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
        f"sentinel monitor {service} 127.0.0.1 {master.port} 1\n"
        f"sentinel down-after-milliseconds {service} 60000\n"
    )
    sentinel = PrivateRedis(binary, port, extra=["--sentinel"], workdir=workdir, config=conf)
    setup = SentinelSetup(master, sentinel, service)
    try:
        sentinel.start_sync()
        wait_for(
            lambda: str(master.port).encode() in command(port, "SENTINEL", "get-master-addr-by-name", service),
            "the sentinel knowing the master",
        )
    except BaseException:
        setup.stop()
        raise
    return setup

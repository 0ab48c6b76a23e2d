"""What the test bed (``scripts/testbed.py``) is built on: ports, waiting on processes, its
PostgreSQL audit database and table, its Redis keys, and a private ``redis-server`` for tests that
must stop Redis."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

AUDIT_DATABASE = "mcplane_testbed"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """A plain GET (status, body); status 0 when nothing answered."""
    import httpx

    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError:
        return 0, b""
    return response.status_code, response.content


def wait_until(predicate: Any, timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``predicate`` until true; fail after ``timeout`` s or as soon as ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:g} s")
        try:
            if proc is not None:
                proc.wait(timeout=0.05)  # returns early if the process exits
            else:
                threading.Event().wait(0.05)
        except subprocess.TimeoutExpired:
            pass


def with_database(dsn: str, database: str) -> str:
    head, _, _ = dsn.rpartition("/")
    return f"{head}/{database}"


def ensure_audit_database(admin_dsn: str) -> None:
    import psycopg

    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (AUDIT_DATABASE,)).fetchone()
        if found is None:
            try:
                conn.execute(f'CREATE DATABASE "{AUDIT_DATABASE}"')
            except psycopg.errors.DuplicateDatabase:  # another test bed created it meanwhile
                pass
            except psycopg.errors.UniqueViolation:
                pass


def drop_audit_table(admin_dsn: str, table: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(with_database(admin_dsn, AUDIT_DATABASE), autocommit=True) as conn:
        for name in (table, f"{table}_checkpoints", f"{table}_checkpoints_key"):  # the chain and its checkpoints
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))


def delete_redis_keys(redis_url: str, subject: str) -> int:
    """Delete the rate-limit and cache keys of this instance's principal (``*testbed-<id>*``)."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2)
    try:
        keys = list(client.scan_iter(match=f"*{subject}*", count=1000))
        return int(client.delete(*keys)) if keys else 0
    except redis.RedisError:
        return 0
    finally:
        client.close()


class PrivateRedis:
    """A throwaway ``redis-server`` on a free port (never the shared one): start, stop, start again."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> Any:
        import redis

        return redis.Redis(port=self.port, socket_connect_timeout=0.5)

    def ping(self) -> bool:
        import redis

        client = self.client()
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--dir", str(self.workdir)]
        log = (self.workdir / "redis.log").open("ab")
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        wait_until(self.ping, START_TIMEOUT, "redis-server", self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=STOP_TIMEOUT)
        self.proc = None

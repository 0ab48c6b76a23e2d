"""Backend fixtures: a manual clock, the shared Redis with a unique key prefix per test, a private redis-server."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from mcplane.backends import ManualClock
from mcplane.backends.redis import connect_redis

from .harness import PrivateRedis, free_port, redis_answers

REDIS_URL = os.environ.get("MCPLANE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _missing(message: str) -> None:
    """Skip on a developer's machine; fail under CI, where a missing service must not pass silently."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_url() -> str:
    from redis.asyncio.connection import parse_url

    params = parse_url(REDIS_URL)
    if not redis_answers(str(params.get("host", "127.0.0.1")), int(params.get("port", 6379))):
        _missing(f"no Redis answers at {REDIS_URL} (set MCPLANE_TEST_REDIS_URL)")
    return REDIS_URL


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def prefix() -> str:
    return f"mcplane-test:{uuid.uuid4().hex}:"


@pytest.fixture
async def redis_client(redis_url: str, prefix: str) -> AsyncIterator[Redis]:
    """A client on the shared Redis; every key under this test's prefix is deleted afterwards."""
    client = connect_redis(redis_url)
    try:
        yield client
    finally:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        _missing("redis-server is not installed")
    assert binary is not None
    server = PrivateRedis(binary, free_port())
    try:
        yield server
    finally:
        server.stop()

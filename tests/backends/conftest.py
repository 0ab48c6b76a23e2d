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

from .harness import Cluster, PrivateRedis, SentinelSetup, free_port, redis_answers, start_cluster, start_sentinel

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


def redis_binary(name: str = "redis-server") -> str:
    binary = shutil.which(name)
    if binary is None:
        _missing(f"{name} is not installed (the private Redis, Sentinel and Cluster tests need it)")
    assert binary is not None
    return binary


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis(redis_binary(), free_port())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three private master nodes in one Redis Cluster, shared by the whole test session."""
    cluster = start_cluster(redis_binary(), redis_binary("redis-cli"), tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    """A private master and a sentinel watching it, shared by the whole test session."""
    setup = start_sentinel(redis_binary(), tmp_path_factory.mktemp("sentinel"))
    try:
        yield setup
    finally:
        setup.stop()


@pytest.fixture
async def cluster_client(redis_cluster: Cluster, prefix: str) -> AsyncIterator[Redis]:
    """A client of the session's Cluster; this test's keys are deleted afterwards."""
    client = connect_redis(redis_cluster.url)
    try:
        yield client
    finally:
        async for key in client.scan_iter(match=prefix + "*", count=1000):
            await client.delete(key)
        await client.aclose()

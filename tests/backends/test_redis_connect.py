"""Connecting to the Redis deployments users run: URL schemes, client options, Sentinel and Cluster.

Sentinel and Cluster run as private ``redis-server`` processes (session fixtures in conftest).
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

from mcplane.backends import parse_limit
from mcplane.backends.redis import (
    RedisBudgetStore,
    RedisCache,
    RedisOptions,
    RedisRateLimiter,
    connect_redis,
    parse_redis_url,
)
from mcplane.backends.state import RedisStateStore
from mcplane.config import PlaneConfig, load_config
from mcplane.errors import ConfigError, DependencyUnavailable

from .conftest import redis_binary
from .harness import Cluster, PrivateRedis, SentinelSetup, free_port

LIMIT = parse_limit("10/minute")


# ---------------------------------------------------------------------------------------------- URLs
def test_single_server_urls_keep_redis_py_parsing() -> None:
    assert parse_redis_url("redis://127.0.0.1:6379/2").mode == "single"
    assert parse_redis_url("rediss://:pw@redis.example:6380/0").ssl is True
    assert parse_redis_url("unix:///run/redis.sock?db=1").mode == "single"


def test_a_sentinel_url_names_the_sentinels_the_service_and_the_db() -> None:
    target = parse_redis_url("redis+sentinel://user:s3cret@s1:26380,s2,[::1]:26381/billing/3?sentinel_password=sp-9f")
    assert target.mode == "sentinel"
    assert target.nodes == (("s1", 26380), ("s2", 26379), ("::1", 26381))
    assert (target.service, target.db, target.username, target.password) == ("billing", 3, "user", "s3cret")
    assert target.options == {"sentinel_password": "sp-9f"}
    assert "s3cret" not in repr(target)
    assert "sp-9f" not in repr(target)


def test_a_cluster_url_names_its_seed_nodes() -> None:
    target = parse_redis_url("rediss+cluster://:pw@n1:7000,n2?ssl_ca_certs=/ca.pem&ssl_check_hostname=false")
    assert target.mode == "cluster"
    assert target.nodes == (("n1", 7000), ("n2", 6379))
    assert target.ssl is True
    assert target.options == {"ssl_ca_certs": "/ca.pem", "ssl_check_hostname": False}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("127.0.0.1:6379", "no scheme"),
        ("memcached://:hunter2@host:1", "not supported"),
        ("redis+sentinel://:hunter2@s1:26379", "names the service"),
        ("redis+cluster://:hunter2@n1:7000/2", "only database 0"),
        ("redis+cluster://:hunter2@n1:notaport", "port must be a number"),
        ("redis+cluster://:hunter2@n1,,n2", "empty host"),
        ("redis+cluster://:hunter2@n1?color=red", "unknown option 'color'"),
        ("redis+cluster://:hunter2@n1?ssl_ca_certs=/ca.pem", "needs a TLS scheme"),
        ("redis://:hunter2@host:port/0", "not a valid redis:// URL"),
    ],
)
def test_a_bad_url_is_a_config_error_that_never_shows_the_password(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_redis_url(url)
    assert "hunter2" not in info.value.message


def test_a_bad_url_in_the_config_is_reported_when_the_file_is_read(tmp_path: Path) -> None:
    file = tmp_path / "mcplane.yaml"
    file.write_text("redis_url: memcached://:hunter2@h:1\n")
    with pytest.raises(ConfigError, match="not supported") as info:
        load_config(file, environ={})
    assert "hunter2" not in info.value.message


# ---------------------------------------------------------------------------------------------- options
def _kwargs(client: Redis) -> dict[str, object]:
    return dict(client.connection_pool.connection_kwargs)


async def test_options_reach_the_connection_pool() -> None:
    options = RedisOptions(
        socket_timeout=0.7, connect_timeout=0.3, retries=4, max_connections=9, health_check_interval=5
    )
    client = connect_redis("redis://127.0.0.1:6379/0", options=options)
    try:
        kwargs = _kwargs(client)
        assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (0.7, 0.3)
        assert kwargs["health_check_interval"] == 5
        assert client.connection_pool.max_connections == 9
        assert client.get_retry().get_retries() == 4  # pyright: ignore[reportOptionalMemberAccess]
    finally:
        await client.aclose()


async def test_the_defaults_fail_fast() -> None:
    client = connect_redis("redis://127.0.0.1:6379/0")
    try:
        kwargs = _kwargs(client)
        assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (2.0, 2.0)
        assert kwargs["health_check_interval"] == 15.0
        assert client.connection_pool.max_connections == 64
        assert client.get_retry().get_retries() == 1  # pyright: ignore[reportOptionalMemberAccess]
    finally:
        await client.aclose()


def test_bad_options_are_refused() -> None:
    for bad in ({"socket_timeout": 0}, {"retries": -1}, {"max_connections": 0}, {"health_check_interval": -1}):
        with pytest.raises(ConfigError):
            RedisOptions(**bad)  # type: ignore[arg-type]


def test_the_redis_section_parses_durations() -> None:
    config = PlaneConfig.model_validate(
        {"redis_url": "redis://h:6379/0", "redis": {"socket_timeout": "250ms", "health_check_interval": "1m"}}
    )
    assert config.redis.socket_timeout == 0.25
    assert config.redis.health_check_interval == 60.0
    assert RedisOptions(**config.redis.model_dump()).max_connections == 64


async def test_a_rediss_url_connects_with_tls() -> None:
    from redis.asyncio.connection import SSLConnection

    client = connect_redis("rediss://127.0.0.1:6380/0")
    try:
        assert client.connection_pool.connection_class is SSLConnection
    finally:
        await client.aclose()


# ---------------------------------------------------------------------------------------------- real deployments
async def _every_verb(client: Redis, prefix: str) -> None:
    decision = await RedisRateLimiter(client, prefix=prefix).hit_all([("{t}:a", LIMIT), ("{t}:b", LIMIT)])
    assert decision.allowed
    spent = await RedisBudgetStore(client, prefix=prefix).try_spend_all([("{u}", 10), ("{u}:session:s", 5)], 1, 60)
    assert spent.allowed
    cache = RedisCache(client, prefix=prefix)
    await cache.set("tool:x:1", b"v", 60)
    assert await cache.get("tool:x:1") == b"v"
    state = RedisStateStore(client, prefix=prefix)
    assert await state.compare_and_set("{c}:step", None, b"1", 60)
    assert await state.incr("{c}:n", 2, 60) == 2


async def test_every_backend_works_through_sentinel(redis_sentinel: SentinelSetup, prefix: str) -> None:
    client = connect_redis(redis_sentinel.url)
    try:
        await _every_verb(client, prefix)
        assert await client.ping()
        # the data is on the master the sentinel named
        direct = connect_redis(redis_sentinel.master.url)
        try:
            assert await direct.get(f"{prefix}state:{{c}}:n") == b"2"
        finally:
            await direct.aclose()
    finally:
        await client.aclose()


async def test_every_backend_works_on_a_cluster(redis_cluster: Cluster, prefix: str) -> None:
    client = connect_redis(redis_cluster.url)
    try:
        assert isinstance(client, RedisCluster)
        await _every_verb(client, prefix)
        assert await client.ping()
    finally:
        await client.aclose()


async def test_a_cluster_refuses_keys_without_a_shared_tag_so_every_multi_key_verb_tags_them(
    redis_cluster: Cluster, prefix: str
) -> None:
    """The proof that hash tags matter: the same script over untagged keys fails on a Cluster."""
    from redis.exceptions import RedisClusterException, ResponseError

    client = connect_redis(redis_cluster.url)
    try:
        keys = [f"{prefix}plain:a", f"{prefix}plain:b"]
        with pytest.raises((RedisClusterException, ResponseError)):
            await client.eval("return 1", 2, *keys)
        limiter = RedisRateLimiter(client, prefix=prefix)
        for n in range(20):  # many different tags, each multi-key hit on one slot
            assert (await limiter.hit_all([(f"{{tool:{n}}}:alice", LIMIT), (f"{{tool:{n}}}:all", LIMIT)])).allowed
    finally:
        await client.aclose()


async def test_every_backend_works_over_a_unix_socket(tmp_path: Path, prefix: str) -> None:
    socket_path = tmp_path / "redis.sock"
    server = PrivateRedis(redis_binary(), free_port(), extra=["--unixsocket", str(socket_path)], workdir=tmp_path)
    await server.start()
    client = connect_redis(f"unix://{socket_path}?db=0")
    try:
        await _every_verb(client, prefix)
    finally:
        await client.aclose()
        server.stop()


async def test_every_backend_works_over_tls_and_a_wrong_ca_is_refused(tmp_path: Path, prefix: str) -> None:
    from tests.test_tls import CA

    ca = CA("redis test ca")
    cert, key = ca.server().write(tmp_path, "server")
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.pem)
    stranger = tmp_path / "stranger.pem"
    stranger.write_bytes(CA("someone else").pem)
    port = free_port()
    tls = ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    tls += ["--tls-ca-cert-file", str(ca_file), "--tls-auth-clients", "no"]
    server = PrivateRedis(redis_binary(), free_port(), extra=tls, workdir=tmp_path)
    server.spawn()
    try:
        client = connect_redis(f"rediss://localhost:{port}/0?ssl_ca_certs={ca_file}")
        try:
            with anyio.fail_after(10):  # poll until the TLS port answers
                while True:
                    try:
                        assert await client.ping()
                        break
                    except RedisConnectionError:
                        await anyio.sleep(0.05)
            await _every_verb(client, prefix)
        finally:
            await client.aclose()
        untrusted = connect_redis(f"rediss://localhost:{port}/0?ssl_ca_certs={stranger}")
        try:
            with pytest.raises(DependencyUnavailable):
                await RedisStateStore(untrusted, prefix=prefix).get("{c}:k")
        finally:
            await untrusted.aclose()
    finally:
        server.stop()

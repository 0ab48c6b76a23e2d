"""Breaker state shared by replicas: one contract suite for the stores (memory, Redis), the sync
between replicas' breakers, the fallback to local state, and two gateway planes sharing Redis."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from mcplane.backends import ManualClock
from mcplane.backends.redis import connect_redis
from mcplane.gateway import Gateway
from mcplane.gateway.breaker import CircuitBreaker
from mcplane.gateway.breaker_store import BreakerStore, MemoryBreakerStore, RedisBreakerStore
from mcplane.gateway.config import BreakerConfig
from mcplane.gateway.shared import BreakerSync, endpoint_key
from tests.backends.harness import RedisTime, redis_answers
from tests.conftest import free_port, start_server
from tests.gateway.conftest import UPSTREAM_APP, error_code, text_of

REDIS_URL = os.environ.get("MCPLANE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
WAIT = 15.0


def _redis_or_skip() -> None:
    if not redis_answers("127.0.0.1", 6379) and "127.0.0.1:6379" in REDIS_URL:
        if os.environ.get("CI"):
            pytest.fail("no Redis at 127.0.0.1:6379")
        pytest.skip("no Redis at 127.0.0.1:6379")


@dataclass
class Harness:
    store: BreakerStore
    advance: Callable[[float], Awaitable[None]]
    clock: ManualClock


@pytest.fixture(params=["memory", "redis"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    clock = ManualClock()
    if request.param == "memory":

        async def advance(seconds: float) -> None:
            clock.advance(seconds)

        yield Harness(MemoryBreakerStore(clock=clock), advance, clock)
        return
    _redis_or_skip()
    prefix = f"mcplane-test:{uuid.uuid4().hex}:"
    client = connect_redis(REDIS_URL)
    moved = RedisTime(client, prefix)

    async def advance_redis(seconds: float) -> None:
        clock.advance(seconds)  # the breakers' own clock moves too
        await moved(seconds)

    try:
        yield Harness(RedisBreakerStore(client, prefix=prefix), advance_redis, clock)
    finally:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


KEY = endpoint_key("up", 0, "http://127.0.0.1:9/mcp")


# ----------------------------------------------------------------- the store contract
async def test_store_trip_cool_down_one_probe_then_close(harness: Harness) -> None:
    store = harness.store
    assert (await store.read([KEY]))[0].state == "closed"
    opened = await store.trip(KEY, 10)
    assert opened.state == "open"
    refused = await store.claim(KEY, 5)
    assert not refused.granted
    assert refused.state == "open"
    assert 9 < refused.retry_after <= 10
    await harness.advance(10.5)
    probe = await store.claim(KEY, 5)
    assert probe.granted
    assert probe.generation > opened.generation
    second = await store.claim(KEY, 5)
    assert not second.granted
    assert second.state == "half_open"
    closed = await store.close(KEY)
    assert closed.state == "closed"
    assert closed.generation > probe.generation
    assert (await store.read([KEY]))[0] == closed


async def test_store_probe_lease_expires_or_is_released(harness: Harness) -> None:
    store = harness.store
    await store.trip(KEY, 1)
    await harness.advance(1.5)
    first = await store.claim(KEY, 2)
    assert first.granted
    await harness.advance(2.5)  # the prober died without a verdict: its lease ends
    second = await store.claim(KEY, 2)
    assert second.granted
    await store.release(KEY, "not-the-token")
    assert not (await store.claim(KEY, 2)).granted
    await store.release(KEY, second.token)
    assert (await store.claim(KEY, 2)).granted


async def test_store_failed_probe_reopens_and_stale_records_expire(harness: Harness) -> None:
    store = harness.store
    await store.trip(KEY, 1)
    await harness.advance(1.5)
    assert (await store.claim(KEY, 1)).granted
    again = await store.trip(KEY, 1)  # the probe failed
    assert again.state == "open"
    assert not (await store.claim(KEY, 1)).granted
    await harness.advance(1 + 60 + 1)  # cool-down plus the hold: nobody settled it
    record = (await store.read([KEY]))[0]
    assert record.state == "closed"


async def test_store_publishes_every_change_to_listeners(harness: Harness) -> None:
    store = harness.store
    seen: list[tuple[str, str]] = []
    async with store.listen() as events:
        await store.trip(KEY, 1)
        await harness.advance(1.5)
        await store.claim(KEY, 1)
        await store.close(KEY)
        with anyio.fail_after(WAIT):
            async for record in events:
                seen.append((record.key, record.state))
                if record.state == "closed":
                    break
    assert seen == [(KEY, "open"), (KEY, "half_open"), (KEY, "closed")]


# ----------------------------------------------------------------- replicas' breakers through a store
async def _until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(WAIT):
        while True:
            if condition():
                return
            await anyio.sleep(0.01)  # polling a condition under the bound above


async def test_replicas_agree_on_open_and_send_one_probe(harness: Harness) -> None:
    config = BreakerConfig(failures=2, cool_down=10)
    a, b = (CircuitBreaker(config, clock=harness.clock) for _ in range(2))
    sync_a, sync_b = BreakerSync(harness.store, sync_interval=60), BreakerSync(harness.store, sync_interval=60)
    sync_a.attach(a, KEY, lease=5)
    sync_b.attach(b, KEY, lease=5)
    async with anyio.create_task_group() as tg:
        await tg.start(sync_a.run)
        await tg.start(sync_b.run)
        assert await a.claim()
        a.failure()
        assert await b.claim()  # closed: no store involved
        a.failure()  # A's second failure opens the circuit ...
        assert a.state == "open"
        await _until(lambda: b.state == "open")  # ... and B learns it from the store
        assert not await b.claim()
        assert b.retry_after() > 5

        await harness.advance(10.5)
        assert a.state == b.state == "half_open"
        granted = [await a.claim(), await b.claim()]
        assert granted == [True, False]  # one probe across replicas
        a.success()
        await _until(lambda: b.state == "closed")
        assert await b.claim()
        tg.cancel_scope.cancel()


async def test_a_store_that_is_down_leaves_local_state(caplog: pytest.LogCaptureFixture) -> None:
    client = connect_redis(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)  # nothing listens there
    sync = BreakerSync(RedisBreakerStore(client), sync_interval=60)
    clock = ManualClock()
    breaker = CircuitBreaker(BreakerConfig(failures=1, cool_down=1), clock=clock)
    sync.attach(breaker, KEY, lease=1)
    async with anyio.create_task_group() as tg:
        await tg.start(sync.run)
        assert sync.down
        breaker.failure()
        assert breaker.state == "open"
        clock.advance(1)
        assert await breaker.claim()  # the probe, claimed locally
        breaker.success()
        assert await breaker.claim()
        tg.cancel_scope.cancel()
    await client.aclose()
    assert sum("breaker store unavailable" in r.message for r in caplog.records) == 1


# ----------------------------------------------------------------- two gateway replicas over real Redis
def _replica(url: str, prefix_db: str) -> Any:
    upstream = {
        "endpoints": [{"url": url}],
        "retries": {"attempts": 1, "attempt_timeout": "300ms"},
        "breaker": {"failures": 1, "cool_down": "60s"},
        "health_check": {"interval": "30s"},
    }
    return Gateway.from_config(
        {"server": {"default_timeout": "10s"}, "redis_url": prefix_db, "upstreams": {"up": upstream}}
    )


async def test_two_gateway_replicas_share_the_circuit(tmp_path: Path) -> None:
    _redis_or_skip()
    server = start_server(UPSTREAM_APP, tmp_path=tmp_path)
    # The upstream's URL is unique to this test, so its breaker keys are too.
    replica_a, replica_b = _replica(server.url, REDIS_URL), _replica(server.url, REDIS_URL)
    breaker_b = Gateway.provider_of(replica_b).upstreams["up"].endpoints[0].breaker
    try:
        async with Client(replica_a.sdk, mode="legacy") as a, Client(replica_b.sdk, mode="legacy") as b:
            assert text_of(await b.call_tool("up__add", {"a": 1, "b": 2})) == "3"
            failed = await a.call_tool("up__hang_write", {})
            assert error_code(failed) == "timeout"
            await _until(lambda: breaker_b.state == "open")
            refused = await b.call_tool("up__hang_write", {})
            assert error_code(refused) == "circuit_open"  # B refuses without trying
        async with Client(server.url) as direct:
            assert text_of(await direct.call_tool("attempts_of", {"name": "hang_write"})) == "1"
    finally:
        server.stop()
        await _clean(server.url)


async def _clean(url: str) -> None:
    client = connect_redis(REDIS_URL)
    tag = endpoint_key("up", 0, url)
    keys = [k async for k in client.scan_iter(match="mcplane:breaker:*", count=1000) if tag.encode() in k]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_ready_and_gauges_follow_the_upstream(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    from mcplane.observability import metrics as metrics_module
    from mcplane.observability.metrics import Metrics
    from mcplane.transports.http import HTTPApp, HTTPOptions

    fresh = Metrics(CollectorRegistry())
    saved, metrics_module._default = metrics_module._default, fresh  # pyright: ignore[reportPrivateUsage]
    server = start_server(UPSTREAM_APP, tmp_path=tmp_path)
    optional = {
        "endpoints": [{"url": f"http://127.0.0.1:{free_port()}/mcp"}],
        "required": False,
        "connect_timeout": "1s",
    }
    upstream = {
        "endpoints": [{"url": server.url}],
        "breaker": {"failures": 1, "cool_down": "60s"},
        "retries": {"attempts": 1, "attempt_timeout": "300ms"},
        "restart": {"initial": "50ms", "max": "200ms"},
        "health_check": {"interval": "200ms"},
    }
    plane = Gateway.from_config({"upstreams": {"up": upstream, "optional": optional}})
    app = HTTPApp(plane, HTTPOptions())
    label = "[0] " + server.url

    def sample(name: str, **labels: str) -> float | None:
        return fresh.registry.get_sample_value(name, labels)

    try:
        transport = httpx.ASGITransport(app=app)
        async with app.running(), httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            ready = (await http.get("/ready")).json()
            assert ready["status"] == "ready"  # the optional upstream is down and does not count
            assert ready["checks"]["upstream:up"] == "ok"
            assert "upstream:optional" not in ready["checks"]
            assert sample("mcplane_upstream_healthy", upstream="up") == 1
            assert sample("mcplane_circuit_state", upstream="up", endpoint=label) == 0
            async with Client(plane.sdk, mode="legacy") as client:
                assert text_of(await client.call_tool("up__add", {"a": 1, "b": 1})) == "2"
                assert error_code(await client.call_tool("up__hang_write", {})) == "timeout"
            assert sample("mcplane_circuit_state", upstream="up", endpoint=label) == 2
            assert sample("mcplane_upstream_healthy", upstream="up") == 0
            for outcome in ("ok", "timeout"):
                assert sample("mcplane_upstream_calls_total", upstream="up", endpoint=label, outcome=outcome) == 1
            assert (await http.get("/ready")).status_code == 200  # an open circuit is not "not ready"

            server.stop()
            with anyio.fail_after(WAIT):
                while True:
                    if (await http.get("/ready")).status_code == 503:
                        break
                    await anyio.sleep(0.05)  # polling /ready under the bound above
            assert (await http.get("/ready")).json()["checks"]["upstream:up"] == "not connected"
    finally:
        server.stop()
        metrics_module._default = saved  # pyright: ignore[reportPrivateUsage]

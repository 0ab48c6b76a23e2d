"""The scale test bed under load and faults: three ``mcplane run`` replicas behind nginx, sharing Redis
(rate limit, cache) and a PostgreSQL audit log (``scripts/testbed.py``, ``deploy/testbed/``).

- load: mixed tool calls through the load balancer for ``MCPLANE_TESTBED_LOAD_SECONDS`` (10 s by
  default) in both protocol eras; no errors, every answered call in the audit log, the Redis
  rate limit shared by all replicas;
- a replica SIGKILLed under load: only calls in flight on it fail, idempotent and read-only calls
  succeed through :class:`mcplane.client.Client`'s retries, the audit chain holds every answered
  call, the rate limit stays consistent, the replica comes back;
- Redis restarted under load (a throwaway ``redis-server``, never the shared one): only the
  Redis-backed tool fails, with ``dependency_unavailable``, readiness follows Redis, and calls
  succeed again once it is back.

With ``MCPLANE_TESTBED_REPORT=FILE`` each load summary is appended to FILE as a JSON line.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from mcplane.audit.chain import canonical, sha256_hex
from tests.conftest import REPO_ROOT, mcplane_command

sys.path.insert(0, str(REPO_ROOT / "scripts"))  # the scripts import their siblings by name
from scripts.testbed import PrivateRedis, TestBed, http_get, nginx_binary
from scripts.testbed_load import Load, LoadResult, run_load

LOAD_SECONDS = float(os.environ.get("MCPLANE_TESTBED_LOAD_SECONDS", "10"))
REPORT = os.environ.get("MCPLANE_TESTBED_REPORT")
QUOTA = 300
"""``quota_lookup``'s limit in these tests: 300 a minute per principal (GCRA: a burst of 300, then 5/s)."""
CONCURRENCY = 16
WAIT = 60.0
"""Generous bound for waiting on a condition (never for asserting speed)."""

pytestmark = [pytest.mark.testbed, pytest.mark.timeout(600)]

if nginx_binary() is None or shutil.which("redis-server") is None:
    if os.environ.get("CI"):
        pytest.fail("nginx and redis-server are required (scripts/install-test-deps.sh)", pytrace=False)
    pytest.skip("nginx or redis-server is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestBed]:
    with TestBed(tmp_path_factory.mktemp("testbed"), quota_limit=f"{QUOTA}/minute") as bed:
        yield bed


def report(name: str, result: LoadResult) -> dict[str, Any]:
    summary = {"test": name, **result.summary()}
    print(json.dumps(summary))
    if REPORT:
        with open(REPORT, "a", encoding="utf-8") as out:
            out.write(json.dumps(summary) + "\n")
    return summary


# ---------------------------------------------------------------------------------------------- checks
def audit_records(bed: TestBed) -> list[dict[str, Any]]:
    with psycopg.connect(bed.audit_dsn) as conn:
        rows = conn.execute(sql.SQL("SELECT record FROM {} ORDER BY seq").format(sql.Identifier(bed.audit_table)))
        return [json.loads(row[0]) for row in rows]


def check_audit(bed: TestBed, result: LoadResult, key: int) -> None:
    """The chain verifies, and every call the load saw answered has its outcome record."""
    verify = subprocess.run(
        mcplane_command("audit", "verify", "--dsn", bed.audit_dsn, "--table", bed.audit_table),
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.startswith("ok: ")
    subject = bed.subject_for(key)
    recorded: Counter[tuple[str, str, str]] = Counter()
    pending: set[str] = set()
    for record in audit_records(bed):
        if record["subject"] != subject:
            continue
        if record["status"] == "pending":
            pending.add(record["call_id"])
        else:
            recorded[(record["name"], record["args_sha256"], record["status"])] += 1
            assert record["call_id"] in pending, f"outcome without a pending record: {record}"
    acked = Counter((tool, sha256_hex(canonical(args)), status) for tool, args, status in result.acked)
    missing = acked - recorded
    assert not missing, f"{sum(missing.values())} answered calls have no audit record, e.g. {next(iter(missing))}"


def check_rate_limit(result: LoadResult, elapsed: float, *, windows: int = 1) -> None:
    """All replicas share one GCRA bucket: admitted <= burst + elapsed * rate (per Redis lifetime)."""
    admitted = result.outcomes["quota_lookup:ok"]
    refused = result.outcomes["quota_lookup:refused"]
    bound = windows * QUOTA + math.ceil(elapsed * QUOTA / 60) + 1
    assert admitted <= bound, f"{admitted} quota_lookup calls admitted, a shared limit allows at most {bound}"
    if admitted + refused > bound:
        assert refused > 0
        assert admitted >= QUOTA - CONCURRENCY, f"only {admitted} admitted: the limit refused too early"


async def wait_for(predicate: Any, what: str, seconds: float = WAIT) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def answered(load: Load) -> int:
    return sum(load.result.outcomes.values())


# ---------------------------------------------------------------------------------------------- load
async def test_load_2026_stateless_through_the_load_balancer(bed: TestBed) -> None:
    started = time.monotonic()
    result = await run_load(
        bed.lb_url, bed.api_keys[0], era="2026", duration=LOAD_SECONDS, concurrency=CONCURRENCY, run_id="l26"
    )
    elapsed = time.monotonic() - started
    summary = report("load-2026", result)
    assert result.errors == 0, result.error_samples
    for tool in ("echo", "catalog", "quota_lookup", "slow_report"):
        assert result.outcomes[f"{tool}:ok"] > 0, summary["outcomes"]
    assert summary["p50_ms"] <= summary["p99_ms"]
    check_rate_limit(result, elapsed)
    check_audit(bed, result, key=0)


async def test_load_2025_sessions_through_the_load_balancer(bed: TestBed) -> None:
    started = time.monotonic()
    result = await run_load(
        bed.lb_url,
        bed.api_keys[1],
        era="2025",
        duration=LOAD_SECONDS,
        concurrency=CONCURRENCY,
        run_id="l25",
        max_errors=50,  # stop early once it is clearly failing
    )
    elapsed = time.monotonic() - started
    report("load-2025", result)
    assert result.errors == 0, result.error_samples
    check_rate_limit(result, elapsed)
    check_audit(bed, result, key=1)


# ---------------------------------------------------------------------------------------------- faults
async def retrying_caller(bed: TestBed, stop: asyncio.Event, stats: Counter[str], worker: int) -> None:
    """An agent calling idempotent and read-only tools through mcplane's Client, with retries."""
    from mcplane.client import Client, RetryPolicy

    async def counting_sleep(seconds: float) -> None:
        stats["retries"] += 1
        await asyncio.sleep(seconds)

    client = Client(
        bed.lb_url,
        headers=bed.headers_for(2),
        retry=RetryPolicy(attempts=5, backoff=0.05),
        timeout=WAIT,
        sleep=counting_sleep,
    )
    async with client:
        n = 0
        while not stop.is_set():
            n += 1
            tool, args = ("catalog", {"sku": f"sku-{n % 100}", "nonce": f"rc{worker}-{n}"})
            if n % 2:
                tool, args = "echo", {"text": f"rc{worker}-{n}"}
            try:
                await client.call_tool(tool, args)
                stats["ok"] += 1
            except Exception as exc:
                stats["failed"] += 1
                stats[f"failed:{type(exc).__name__}:{getattr(exc, 'code', '')}:{str(exc)[:80]}"] += 1


async def test_replica_killed_under_load(bed: TestBed) -> None:
    load = Load(bed.lb_url, bed.api_keys[2], "2026", 8, "kill")
    started = time.monotonic()
    running = asyncio.create_task(load.run(10 * WAIT, 0.5))  # stopped below, once the story is told
    stop, stats = asyncio.Event(), Counter[str]()
    callers = [asyncio.create_task(retrying_caller(bed, stop, stats, n)) for n in range(4)]
    await wait_for(lambda: answered(load) >= 300 and stats["ok"] >= 20, "the load to get going")
    victim = bed.members[1]
    await asyncio.to_thread(bed.kill_replica, 1, signal.SIGKILL)
    killed_at = answered(load)
    await wait_for(lambda: answered(load) >= killed_at + 300, "calls to go on without the replica")
    load.running = False
    result = await running
    stop.set()
    await asyncio.gather(*callers)
    elapsed = time.monotonic() - started
    report("fault-kill-replica", result)
    print(json.dumps({"retrying_callers": dict(stats)}))

    # The raw load does not retry: at most the calls in flight on the killed replica failed, each
    # as a lost upstream (nginx's 502), never as a wrong answer.
    assert result.errors <= load.concurrency, result.error_samples
    for sample in result.error_samples:
        assert "HTTP 502" in sample, sample
    assert stats["ok"] > 0
    check_rate_limit(result, elapsed)
    check_audit(bed, result, key=2)

    # The replica comes back on its port and nginx sends it work again.
    await asyncio.to_thread(bed.restart_replica, 1)
    assert victim.proc is not None
    assert victim.proc.poll() is None
    for replica in bed.members:
        assert http_get(replica.base + "/ready")[0] == 200
    again = await run_load(bed.lb_url, bed.api_keys[3], duration=2.0, warmup=0.2, concurrency=4, run_id="back")
    assert again.errors == 0, again.error_samples

    # Idempotent and read-only calls through mcplane's Client all succeeded: the load balancer's
    # 502 for a call lost with the replica is a retryable dependency_unavailable to the Client.
    assert stats["failed"] == 0, dict(stats)


async def test_redis_restarted_under_load(tmp_path: Path) -> None:
    store = PrivateRedis(tmp_path / "redis")
    store.start()
    try:
        with TestBed(tmp_path / "bed", quota_limit=f"{QUOTA}/minute", redis_url=store.url) as bed:
            await _redis_restart(bed, store)
    finally:
        store.stop()


async def _redis_restart(bed: TestBed, store: PrivateRedis) -> None:
    load = Load(bed.lb_url, bed.api_keys[0], "2026", 8, "redis")
    started = time.monotonic()
    running = asyncio.create_task(load.run(10 * WAIT, 0.5))  # stopped below, once the story is told
    outcomes = load.result.outcomes
    await wait_for(lambda: answered(load) >= 300, "the load to get going")

    await asyncio.to_thread(store.stop)
    await wait_for(lambda: outcomes["quota_lookup:error"] >= 5, "quota_lookup to fail without Redis")
    await wait_for(lambda: all(http_get(r.base + "/ready")[0] == 503 for r in bed.members), "/ready to say 503")
    echo_before = outcomes["echo:ok"]
    await wait_for(lambda: outcomes["echo:ok"] >= echo_before + 50, "echo to go on without Redis")

    await asyncio.to_thread(store.start)  # same port, empty: the limiter's state is gone
    await wait_for(lambda: all(http_get(r.base + "/ready")[0] == 200 for r in bed.members), "/ready to say 200")
    quota_before = outcomes["quota_lookup:ok"]
    await wait_for(lambda: outcomes["quota_lookup:ok"] >= quota_before + 10, "quota_lookup to work again")
    load.running = False
    result = await running
    elapsed = time.monotonic() - started
    report("fault-redis-restart", result)

    # Only the Redis-backed tool failed, always with the retryable dependency_unavailable.
    assert result.errors == outcomes["quota_lookup:error"], result.error_samples
    for sample in result.error_samples:
        assert sample.startswith("quota_lookup: error result 'dependency_unavailable'"), sample
    for tool in ("echo", "catalog", "slow_report"):
        assert outcomes[f"{tool}:error"] == 0
    assert all(r.proc is not None and r.proc.poll() is None for r in bed.members), "a replica died"
    check_rate_limit(result, elapsed, windows=2)  # one fresh burst per Redis lifetime
    check_audit(bed, result, key=0)


# ---------------------------------------------------------------------------------------------- the CLI
def test_testbed_cli_up_status_down(tmp_path: Path) -> None:
    script = [sys.executable, str(REPO_ROOT / "scripts" / "testbed.py")]
    state = ["--dir", str(tmp_path)]
    up = subprocess.run(
        [*script, "up", "--detach", "--replicas", "1", *state], capture_output=True, text=True, timeout=180, check=False
    )
    assert up.returncode == 0, up.stderr + (tmp_path / "up.log").read_text(errors="replace")
    url = up.stdout.strip()
    assert url.startswith("http://127.0.0.1:")
    assert url.endswith("/mcp")
    info = json.loads((tmp_path / "testbed.json").read_text())
    try:
        status = subprocess.run([*script, "status", *state], capture_output=True, text=True, timeout=60, check=False)
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.count("/ready 200") == 1
        assert http_get(url.removesuffix("/mcp") + "/health")[0] == 200
    finally:
        down = subprocess.run([*script, "down", *state], capture_output=True, text=True, timeout=180, check=False)
    assert down.returncode == 0, down.stderr
    pids = [info["nginx_pid"], info["owner_pid"], *(r["pid"] for r in info["replicas"])]
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()], "a test bed process outlived `down`"
    with psycopg.connect(info["audit_dsn"]) as conn:
        found = conn.execute("SELECT to_regclass(%s)", (info["audit_table"],)).fetchone()
    assert found == (None,), "down drops the instance's audit table"


# ---------------------------------------------------------------------------------------------- the docs
DOCS = [REPO_ROOT / "docs" / "reliability.md", REPO_ROOT / "docs" / "scaling.md"]


def test_documented_commands_exist() -> None:
    """Every ``python scripts/X.py`` line in the reliability and scaling docs names a script whose
    ``--help`` offers each flag the line uses."""
    checked = 0
    for doc in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), flags=re.S):
            for line in block.splitlines():
                match = re.search(r"python (scripts/\w+\.py)(.*?)(#|$)", line)
                if match is None:
                    continue
                script, rest = REPO_ROOT / match.group(1), match.group(2)
                assert script.is_file(), f"{doc.name}: {line}"
                usage = subprocess.run(
                    [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=WAIT, check=True
                ).stdout
                for flag in re.findall(r"(--[\w-]+)", rest):
                    assert flag in usage, f"{doc.name}: {script.name} has no {flag}"
                checked += 1
    assert checked >= 5

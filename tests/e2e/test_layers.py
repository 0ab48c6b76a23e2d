"""The configured, layered server end to end: real ``mcplane run --config`` processes, real Redis
and PostgreSQL, and the official SDK client over Streamable HTTP (both protocol eras), stdio and
WebSocket.

One config (written here, see :func:`_layered_config`) turns every layer on: JWT and API-key
authentication, deny-by-default authorization, a per-tool override from the file, a Redis rate
limit, an encrypted cache, a budget and a file audit log. Two server processes run it, so the
Redis rate limit is shown to hold across replicas. Two more processes cover what that config
cannot: a Redis that is down (readiness, fail closed) and the PostgreSQL audit sink.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import httpx2
import jwt
import orjson
import psycopg
import pytest
import yaml
from cryptography.fernet import Fernet
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult
from psycopg import sql

from mcplane import websocket_client
from mcplane.auth import generate_api_key, hash_api_key
from mcplane.secrets import MASK
from tests.conftest import REPO_ROOT, ServerProcess, error_of, free_port, mcplane_command, start_server

APP = Path(__file__).resolve().parent / "layered_app.py"
ISSUER = "https://login.example.test"
AUDIENCE = "https://layered.example.test/mcp"
LEGACY = "2025-11-25"
MODERN = "2026-07-28"
ERAS = [pytest.param("legacy", id="legacy"), pytest.param(MODERN, id="modern")]
POSTGRES_DSN = os.environ.get("MCPLANE_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
BUDGET_LIMIT = 1000
PRICEY_COST = 400
"""What layered_app's ``pricey`` declares (``cost=400``): two calls fit the budget, a third does not."""

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------- servers
@dataclass
class Layered:
    """The two replicas of the fully layered config, and what the tests need to talk to them."""

    a: ServerProcess
    b: ServerProcess
    config: Path
    audit: Path
    env: dict[str, str]
    run: str
    """Unique per test run: subjects carry it, so Redis buckets of earlier runs never interfere."""
    api_key: str

    @property
    def jwt_secret(self) -> str:
        return self.env["JWT_SECRET"]

    @property
    def app_secret(self) -> str:
        return self.env["LAYERED_APP_SECRET"]

    def subject(self, name: str) -> str:
        return f"{name}-{self.run}"

    def token(self, name: str, roles: list[str] | None = None, *, key: str | None = None, **claims: Any) -> str:
        now = int(time.time())
        body: dict[str, Any] = {
            "sub": self.subject(name),
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 600,
            "roles": roles or [],
        }
        body.update(claims)
        return jwt.encode(body, key or self.jwt_secret, algorithm="HS256")


def _write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


PUBLIC_TOOLS = [
    "whoami",
    "echo",
    "slow_report",
    "limited",
    "counted",
    "pricey",
    "login",
    "fail_politely",
    "explode",
    "deadline_info",
    "wait_for",
    "schedule",
]
"""Tools the file opens to every authenticated caller; anything else falls to ``default: deny``."""


def _layered_config(audit: Path, api_key: str) -> dict[str, Any]:
    return {
        "server": {"name": "layered", "default_timeout": "5s"},
        "redis_url": "redis://127.0.0.1:6379/0",
        "auth": {
            "jwt": {"issuer": ISSUER, "audience": AUDIENCE, "keys": [{"secret": "${env:JWT_SECRET}"}]},
            "api_keys": [{"id": "ci-bot", "hash": hash_api_key(api_key), "subject": "ci-bot", "roles": ["admin"]}],
        },
        "authorization": {
            "default": "deny",
            "tools": {"admin_*": {"roles": ["admin"]}, **{name: {} for name in PUBLIC_TOOLS}},
        },
        "rate_limit": {"backend": "redis"},
        "cache": {"enabled": True, "encryption_keys": ["${env:LAYERED_APP_SECRET}"]},
        "budget": {"limit": BUDGET_LIMIT},
        "audit": {"sink": "file", "path": str(audit)},
        "tools": {"slow_*": {"timeout": "100ms"}},
    }


@pytest.fixture(scope="module")
def layered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Layered]:
    tmp = tmp_path_factory.mktemp("layered")
    audit = tmp / "audit.jsonl"
    api_key, _ = generate_api_key()
    config = _write_config(tmp / "mcplane.yaml", _layered_config(audit, api_key))
    env = {"JWT_SECRET": f"jwt-{uuid.uuid4().hex}", "LAYERED_APP_SECRET": Fernet.generate_key().decode()}
    args = ("--config", str(config))
    a = start_server(APP, tmp_path=tmp, env=env, extra_args=args)
    try:
        b = start_server(APP, tmp_path=tmp, env=env, extra_args=args)
    except BaseException:
        a.stop()
        raise
    try:
        yield Layered(a, b, config, audit, env, uuid.uuid4().hex[:12], api_key)
    finally:
        a.stop()
        b.stop()


@pytest.fixture(scope="module")
def degraded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose rate limit is on a Redis nobody listens on."""
    tmp = tmp_path_factory.mktemp("degraded")
    config = _write_config(
        tmp / "mcplane.yaml",
        {"redis_url": f"redis://127.0.0.1:{free_port()}/0", "rate_limit": {"backend": "redis"}},
    )
    server = start_server(APP, tmp_path=tmp, extra_args=("--config", str(config)))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def postgres_audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    """A server auditing to a fresh PostgreSQL table (dropped afterwards)."""
    try:
        with psycopg.connect(POSTGRES_DSN, connect_timeout=3):
            pass
    except psycopg.OperationalError:
        message = f"no PostgreSQL answering at {POSTGRES_DSN} (set MCPLANE_TEST_POSTGRES_DSN)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    table = f"mcplane_audit_e2e_{uuid.uuid4().hex[:12]}"
    tmp = tmp_path_factory.mktemp("pg-audit")
    config = _write_config(tmp / "mcplane.yaml", {"audit": {"sink": "postgres", "dsn": POSTGRES_DSN, "table": table}})
    server = start_server(APP, tmp_path=tmp, extra_args=("--config", str(config)))
    try:
        yield server, table
    finally:
        server.stop()
        with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
            for name in (table, f"{table}_checkpoints", f"{table}_checkpoints_key"):
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))


# ---------------------------------------------------------------------------------------------- clients
@asynccontextmanager
async def connect(
    url: str, mode: str = MODERN, *, token: str | None = None, headers: dict[str, str] | None = None
) -> AsyncGenerator[Client]:
    """The SDK client over Streamable HTTP, sending ``token`` as a bearer credential."""
    sent = dict(headers or {})
    if token is not None:
        sent["authorization"] = f"Bearer {token}"
    async with (
        httpx2.AsyncClient(headers=sent, timeout=httpx2.Timeout(15.0)) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        yield client


def value_of(result: CallToolResult) -> Any:
    """A successful result's value (a tool returning a dict gives it as the structured content)."""
    assert result.is_error is False, result
    content = result.structured_content
    assert content is not None
    return content["result"] if set(content) == {"result"} else content


async def eventually(probe: Callable[[], T | None], *, seconds: float = 10.0, what: str = "the condition") -> T:
    """Poll ``probe`` until it returns something other than ``None`` (or fail after ``seconds``)."""
    with anyio.move_on_after(seconds):
        while True:
            found = probe()
            if found is not None:
                return found
            await anyio.sleep(0.02)
    pytest.fail(f"{what} did not happen within {seconds:g} s")


async def within(seconds: float, awaitable: Awaitable[T]) -> T:
    with anyio.fail_after(seconds):
        return await awaitable


# ---------------------------------------------------------------------------------------------- auth
def test_no_token_is_401_with_a_bearer_challenge(layered: Layered) -> None:
    response = httpx.post(layered.a.url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, timeout=5)
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="{layered.a.base}/.well-known/oauth-protected-resource/mcp"' in challenge
    assert "error=" not in challenge  # RFC 6750 §3.1: no credential, no error code
    assert response.json()["error"]["data"]["details"] == {"reason": "missing_token"}


BAD_TOKENS: dict[str, tuple[dict[str, Any], str]] = {
    "expired": ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, "expired"),
    "wrong-audience": ({"aud": "https://someone-else.example.test/mcp"}, "wrong_audience"),
    "wrong-issuer": ({"iss": "https://evil.example.test"}, "wrong_issuer"),
    "bad-signature": ({"key": "another-secret-another-secret-another"}, "bad_signature"),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_a_bad_token_is_401_with_its_reason(layered: Layered, case: str) -> None:
    overrides, reason = BAD_TOKENS[case]
    token = layered.token("bad", **overrides)
    response = httpx.post(
        layered.a.url,
        json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
        headers={"authorization": f"Bearer {token}"},
        timeout=5,
    )
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert response.json()["error"]["data"]["details"] == {"reason": reason}


def test_protected_resource_metadata_is_served(layered: Layered) -> None:
    response = httpx.get(f"{layered.a.base}/.well-known/oauth-protected-resource/mcp", timeout=5)
    assert response.status_code == 200
    assert response.json()["resource"] == layered.a.url
    assert response.json()["bearer_methods_supported"] == ["header"]


@pytest.mark.parametrize("mode", ERAS)
async def test_a_good_token_is_the_principal(layered: Layered, mode: str) -> None:
    async with connect(layered.a.url, mode, token=layered.token("alice", ["analyst"])) as client:
        assert client.protocol_version == (LEGACY if mode == "legacy" else MODERN)
        me = value_of(await within(10, client.call_tool("whoami", {})))
    assert me == {
        "subject": layered.subject("alice"),
        "roles": ["analyst"],
        "auth_method": None,
        "api_key_id": None,
        "issuer": ISSUER,
    }


@pytest.mark.parametrize("header", ["x-api-key", "authorization"])
async def test_an_api_key_hashed_in_the_config_authenticates(layered: Layered, header: str) -> None:
    value = layered.api_key if header == "x-api-key" else f"Bearer {layered.api_key}"
    async with connect(layered.a.url, headers={header: value}) as client:
        me = value_of(await within(10, client.call_tool("whoami", {})))
    assert me == {
        "subject": "ci-bot",
        "roles": ["admin"],
        "auth_method": "api_key",
        "api_key_id": "ci-bot",
        "issuer": None,
    }
    async with httpx.AsyncClient(timeout=5) as http:
        wrong = await http.post(layered.a.url, json={}, headers={"x-api-key": generate_api_key()[0]})
    assert wrong.status_code == 401


async def test_stdio_authenticates_the_token_in_mcplane_token(layered: Layered) -> None:
    token = layered.token("stdio-user")
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcplane.cli", "run", str(APP), "--config", str(layered.config)],
        cwd=str(REPO_ROOT),
        env={**layered.env, "MCPLANE_TOKEN": token},
    )
    async with Client(params, mode="legacy") as client:
        me = value_of(await within(15, client.call_tool("whoami", {})))
        denied = await within(10, client.call_tool("admin_stats", {}))
    assert me["subject"] == layered.subject("stdio-user")
    assert error_of(denied)["code"] == "forbidden"


async def test_websocket_authenticates_and_filters_the_tool_list(layered: Layered) -> None:
    token = layered.token("ws-user")
    transport: AbstractAsyncContextManager[Any] = websocket_client(
        layered.a.ws_url, headers={"authorization": f"Bearer {token}"}
    )
    async with Client(transport, mode=MODERN) as client:  # pyright: ignore[reportArgumentType]
        me = value_of(await within(10, client.call_tool("whoami", {})))
        names = {tool.name for tool in (await within(10, client.list_tools())).tools}
    assert me["subject"] == layered.subject("ws-user")
    assert names == set(PUBLIC_TOOLS)


# ---------------------------------------------------------------------------------------------- authorization
@pytest.mark.parametrize("mode", ERAS)
async def test_denied_calls_answer_forbidden(layered: Layered, mode: str) -> None:
    async with connect(layered.a.url, mode, token=layered.token("plain")) as client:
        by_file = await within(10, client.call_tool("admin_stats", {}))
        by_code = await within(10, client.call_tool("ops_restart", {}))
        by_default = await within(10, client.call_tool("internal_debug", {}))
    for result in (by_file, by_code, by_default):
        error = error_of(result)
        assert error["code"] == "forbidden"
        assert error["retryable"] is False
    async with connect(layered.a.url, mode, token=layered.token("boss", ["admin", "ops"])) as client:
        assert value_of(await within(10, client.call_tool("admin_stats", {}))) == "stats"
        assert value_of(await within(10, client.call_tool("ops_restart", {}))) == "restarted"
        assert error_of(await within(10, client.call_tool("internal_debug", {})))["code"] == "forbidden"


@pytest.mark.parametrize("mode", ERAS)
async def test_tools_list_hides_what_the_principal_may_not_call(layered: Layered, mode: str) -> None:
    async with connect(layered.a.url, mode, token=layered.token("lister")) as client:
        plain = {tool.name for tool in (await within(10, client.list_tools())).tools}
    async with connect(layered.a.url, mode, token=layered.token("lister-admin", ["admin"])) as client:
        admin = {tool.name for tool in (await within(10, client.list_tools())).tools}
    assert plain == set(PUBLIC_TOOLS)
    assert admin == {*PUBLIC_TOOLS, "admin_stats"}  # ops_restart needs ops; internal_debug no one


# ---------------------------------------------------------------------------------------------- file over code
async def test_the_files_timeout_overrides_the_decorators(layered: Layered) -> None:
    async with connect(layered.a.url, token=layered.token("impatient")) as client:
        started = time.monotonic()
        result = await within(10, client.call_tool("slow_report", {}))
        elapsed = time.monotonic() - started
    error = error_of(result)
    assert error["code"] == "timeout"
    assert error["retryable"] is True
    assert elapsed < 1.5, "the file's 100ms must win over the decorator's 5s (and the tool's 2s sleep)"


# ---------------------------------------------------------------------------------------------- rate limit
async def test_the_redis_rate_limit_is_shared_by_two_processes(layered: Layered) -> None:
    token = layered.token("bursty")
    ok = 0
    refused: list[dict[str, Any]] = []
    async with (
        connect(layered.a.url, MODERN, token=token) as first,
        connect(layered.b.url, "legacy", token=token) as second,
    ):
        for i in range(12):
            result = await within(10, (first if i % 2 == 0 else second).call_tool("limited", {}))
            if result.is_error:
                refused.append(error_of(result))
            else:
                ok += 1
    assert ok == 5, "5/minute holds across both replicas, not 5 per process"
    assert len(refused) == 7
    for error in refused:
        assert error["code"] == "rate_limited"
        assert error["retryable"] is True
        assert 0 < error["retry_after_ms"] <= 60_000


# ---------------------------------------------------------------------------------------------- cache
async def test_read_only_results_are_cached_per_principal(layered: Layered) -> None:
    key = uuid.uuid4().hex
    async with connect(layered.a.url, token=layered.token("cache-a")) as client:
        first = value_of(await within(10, client.call_tool("counted", {"key": key})))
        again = value_of(await within(10, client.call_tool("counted", {"key": key})))
        other_args = value_of(await within(10, client.call_tool("counted", {"key": key + "-2"})))
    async with connect(layered.a.url, token=layered.token("cache-b")) as client:
        other_principal = value_of(await within(10, client.call_tool("counted", {"key": key})))
    assert first == 1
    assert again == 1, "the second identical call is served from the cache: the tool did not run"
    assert other_args == 1
    assert other_principal == 2, "cache_scope private: another principal's entry is not shared"


# ---------------------------------------------------------------------------------------------- budget
async def test_the_budget_refuses_before_the_tool_runs(layered: Layered) -> None:
    async with connect(layered.a.url, token=layered.token("spender")) as client:
        runs = [value_of(await within(10, client.call_tool("pricey", {}))) for _ in range(2)]
        refused = error_of(await within(10, client.call_tool("pricey", {})))
    assert refused["code"] == "budget_exceeded"
    assert refused["details"]["cost"] == PRICEY_COST
    assert refused["details"]["limit"] == BUDGET_LIMIT
    async with connect(layered.a.url, token=layered.token("spender-2")) as client:
        after = value_of(await within(10, client.call_tool("pricey", {})))
    assert after == runs[-1] + 1, "the refused call never reached the tool"


# ---------------------------------------------------------------------------------------------- audit
def _records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        mcplane_command("audit", "verify", *args), capture_output=True, text=True, timeout=30, cwd=REPO_ROOT
    )


async def test_every_call_leaves_a_verifiable_audit_trail(layered: Layered, tmp_path: Path) -> None:
    token = layered.token("audited")
    password = f"pw-{uuid.uuid4().hex}"
    async with connect(layered.a.url, token=token) as client:
        assert value_of(await within(10, client.call_tool("echo", {"text": "hello"}))) == "hello"
        assert error_of(await within(10, client.call_tool("fail_politely", {})))["code"] == "not_found"
        assert error_of(await within(10, client.call_tool("admin_stats", {})))["code"] == "forbidden"
        assert value_of(await within(10, client.call_tool("login", {"username": "ann", "password": password})))
    subject = layered.subject("audited")

    def mine() -> list[dict[str, Any]] | None:
        found = [r for r in _records(layered.audit) if r["subject"] == subject]
        return found if len(found) >= 8 else None

    records = await eventually(mine, what="eight audit records of the caller")
    outcomes = {(r["name"], r["status"], r["error_code"]) for r in records if r["status"] != "pending"}
    assert outcomes == {
        ("echo", "ok", None),
        ("fail_politely", "error", "not_found"),
        ("admin_stats", "error", "forbidden"),
        ("login", "ok", None),
    }
    assert sorted(r["name"] for r in records if r["status"] == "pending") == sorted(
        ["echo", "fail_politely", "admin_stats", "login"]
    )
    text = layered.audit.read_text(encoding="utf-8")
    for secret in (password, token, layered.jwt_secret, layered.app_secret, layered.api_key):
        assert secret not in text

    intact = _verify("--file", str(layered.audit))
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert intact.stdout.startswith("ok: ")

    tampered = tmp_path / "tampered.jsonl"
    shutil.copy(layered.audit, tampered)
    lines = tampered.read_text(encoding="utf-8").splitlines(keepends=True)
    target = next(r for r in records if r["name"] == "echo" and r["status"] == "ok")
    index = next(i for i, line in enumerate(lines) if orjson.loads(line)["seq"] == target["seq"])
    lines[index] = lines[index].replace('"name":"echo"', '"name":"ech0"')
    tampered.write_text("".join(lines), encoding="utf-8")
    broken = _verify("--file", str(tampered))
    assert broken.returncode == 1
    assert f"record {target['seq']} (line {index + 1}): hash mismatch (edited)" in broken.stdout


async def test_the_postgres_audit_sink_verifies(postgres_audited: tuple[ServerProcess, str]) -> None:
    server, table = postgres_audited
    async with connect(server.url) as client:
        assert value_of(await within(10, client.call_tool("echo", {"text": "pg"}))) == "pg"
        assert error_of(await within(10, client.call_tool("fail_politely", {})))["code"] == "not_found"

    def rows() -> int | None:
        with psycopg.connect(POSTGRES_DSN) as conn:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
        return row[0] if row is not None and row[0] >= 4 else None

    assert await eventually(rows, what="four audit rows") >= 4
    verified = _verify("--dsn", POSTGRES_DSN, "--table", table)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("ok: ")


# ---------------------------------------------------------------------------------------------- readiness
async def test_redis_down_is_not_ready_and_fails_closed(degraded: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        ready = await http.get(f"{degraded.base}/ready")
        health = await http.get(f"{degraded.base}/health")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "not ready"
    assert body["checks"]["redis"] == "redis unreachable"
    assert body["checks"]["server"] == "ok"
    assert health.status_code == 200
    async with connect(degraded.url) as client:
        limited = error_of(await within(10, client.call_tool("limited", {})))
        echoed = value_of(await within(10, client.call_tool("echo", {"text": "still here"})))
    assert limited["code"] == "dependency_unavailable"
    assert limited["retryable"] is True
    assert echoed == "still here"


# ---------------------------------------------------------------------------------------------- deadlines
@pytest.mark.parametrize("mode", ERAS)
async def test_the_callers_deadline_arrives_in_meta(layered: Layered, mode: str) -> None:
    async with connect(layered.a.url, mode, token=layered.token("hurried")) as client:
        seen = value_of(await within(10, client.call_tool("deadline_info", {}, meta={"mcplane/timeout_ms": 300})))
    assert 0 < seen["remaining"] <= 0.3
    assert 0 <= seen["propagation_meta"]["mcplane/timeout_ms"] <= 300


@pytest.mark.parametrize("mode", ERAS)
async def test_the_callers_deadline_arrives_in_a_header(layered: Layered, mode: str) -> None:
    headers = {"mcplane-timeout-ms": "200"}
    async with connect(layered.a.url, mode, token=layered.token("hurried-h"), headers=headers) as client:
        seen = value_of(await within(10, client.call_tool("deadline_info", {})))
    assert 0 < seen["remaining"] <= 0.2
    assert 0 <= seen["propagation_meta"]["mcplane/timeout_ms"] <= 200


async def test_a_call_outliving_the_callers_deadline_is_deadline_exceeded(layered: Layered) -> None:
    async with connect(layered.a.url, token=layered.token("late")) as client:
        started = time.monotonic()
        result = await within(10, client.call_tool("wait_for", {"seconds": 5}, meta={"mcplane/timeout_ms": 200}))
        elapsed = time.monotonic() - started
    assert error_of(result)["code"] == "deadline_exceeded"
    assert elapsed < 3


# ---------------------------------------------------------------------------------------------- validation
async def test_seed_validation_cases(layered: Layered) -> None:
    async with connect(layered.a.url, token=layered.token("validator")) as client:
        ok = await within(10, client.call_tool("schedule", {"when": "2026-11-24T09:00:00Z", "title": "standup"}))
        bad_date = await within(10, client.call_tool("schedule", {"when": "next tuesday", "title": "standup"}))
        blank = await within(10, client.call_tool("schedule", {"when": "2026-11-24T09:00:00Z", "title": "   "}))
    assert value_of(ok) == "standup at 2026-11-24T09:00:00+00:00"
    for result, field in ((bad_date, "when"), (blank, "title")):
        error = error_of(result)
        assert error["code"] == "invalid_arguments"
        assert [detail["field"] for detail in error["details"]] == [field]
    assert "next tuesday" not in bad_date.model_dump_json()


# ---------------------------------------------------------------------------------------------- errors
async def test_a_crash_never_leaks_the_configs_secret(layered: Layered) -> None:
    async with connect(layered.a.url, token=layered.token("crasher")) as client:
        result = await within(10, client.call_tool("explode", {}))
    error = error_of(result)
    assert error["code"] == "internal_error"
    assert error["message"] == "internal error"
    cid = error["correlation_id"]
    assert layered.app_secret not in result.model_dump_json(by_alias=True)

    def logged() -> str | None:
        text = layered.a.stderr()
        return text if cid in text else None

    log = await eventually(logged, what="the crash being logged with its correlation id")
    assert "RuntimeError" in log
    # The console handler may wrap long lines and draw a box around the traceback: look through both.
    flat = re.sub(r"[\s\u2500-\u257f\u2771]", "", log)
    assert layered.app_secret not in flat, "a secret from the config reached the server's log"
    assert MASK in flat, "the log should show the redaction mask where the secret was"

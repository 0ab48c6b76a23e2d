"""Hostile arguments against typed tools, over HTTP, WebSocket and through the gateway.

- property-based (hypothesis): argument shapes, sizes and encodings (deep nesting, huge integers,
  lone surrogates, wrong types, long arrays) always get a JSON-RPC answer of bounded size, never
  a 5xx, and the server stays healthy;
- the reported amplification (a 500,000-item wrong array: 100 MB answer, 1 GB of memory) and the
  catastrophic pattern (``^(a+)+$``): bounded answers, bounded memory, and a ``/health`` probe sent
  meanwhile keeps answering (a generous bound here; the precise figures are in ``bench/``).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect

from tests.conftest import REPO_ROOT, ServerProcess, free_port, start_server
from tests.gateway.conftest import wait_for_port

APP = Path(__file__).with_name("hostile_app.py")
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}
ANSWER_CAP = 64 * 1024
"""No answer to a bad call may be larger than this (the error lists at most 20 problems)."""
PROBE_BOUND = 3.0
"""Seconds a /health probe may take while a hostile call runs (it took 7-14 s before the fix)."""


@dataclass
class Target:
    name: str
    base: str
    pid: int

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"


@pytest.fixture(scope="module")
def plane_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(APP, tmp_path=tmp_path_factory.mktemp("hostile-plane"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, plane_server: ServerProcess) -> Iterator[Target]:
    tmp = tmp_path_factory.mktemp("hostile-gateway")
    config = tmp / "gateway.yaml"
    config.write_text(yaml.safe_dump({"upstreams": {"up": {"endpoints": [{"url": plane_server.url}]}}}))
    port = free_port()
    with (tmp / "gateway.stderr").open("wb") as errlog:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mcplane.gateway.cli", "--config", str(config), "--port", str(port)],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errlog,
        )
    try:
        wait_for_port(port, proc)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while "up__place" not in httpx.post(f"{base}/mcp", **_request("tools/list", {}), timeout=10).text:
            assert time.monotonic() < deadline, "the gateway did not list its upstream's tools"
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.05)  # a gateway that exits ends the wait at once
        yield Target("gateway", base, proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module", params=["plane", "gateway"])
def target(request: pytest.FixtureRequest, plane_server: ServerProcess) -> Target:
    if request.param == "plane":
        return Target("plane", plane_server.base, plane_server.proc.pid)
    return request.getfixturevalue("gateway")


def _tool(target: Target, name: str) -> str:
    return f"up__{name}" if target.name == "gateway" else name


def _request(method: str, params: dict[str, Any], *, name: str | None = None) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": MODERN_META}}
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": method,
    }
    if name is not None:
        headers["mcp-name"] = name
    # json (not orjson): it writes a lone surrogate as the escape "\ud800", as a hostile client would
    return {"content": json.dumps(body).encode(), "headers": headers}


def _call(target: Target, name: str, arguments: Any, timeout: float = 60) -> httpx.Response:
    tool = _tool(target, name)
    return httpx.post(
        target.url, **_request("tools/call", {"name": tool, "arguments": arguments}, name=tool), timeout=timeout
    )


def _error(response: httpx.Response) -> dict[str, Any]:
    result = response.json()["result"]
    assert result["isError"] is True
    return result["_meta"]["mcplane/error"]


class Probe:
    """Polls ``/health`` from a thread while something else runs; keeps the slowest answer's time."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.slowest = 0.0
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=60) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                assert client.get(f"{self.base}/health").status_code == 200
                self.slowest = max(self.slowest, time.monotonic() - started)
                self.count += 1
                self._stop.wait(0.02)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


# ------------------------------------------------------------------------------ the reported cases
def test_a_huge_wrong_array_gets_a_small_answer_and_health_keeps_answering(target: Target) -> None:
    rss_before = psutil.Process(target.pid).memory_info().rss
    items = list(range(500_000))  # 3.4 MB of JSON, under the 4 MiB body cap
    with Probe(target.base) as probe:
        response = _call(target, "place", {"order": {"customer": "c", "items": items}})
    assert response.status_code == 200
    assert len(response.content) < ANSWER_CAP
    error = _error(response)
    assert error["code"] == "invalid_arguments"
    assert error["message"] == "the arguments hold more than 100000 values"
    assert probe.count > 0
    assert probe.slowest < PROBE_BOUND, f"/health took {probe.slowest:.2f} s while the call ran"
    grown = psutil.Process(target.pid).memory_info().rss - rss_before
    assert grown < 300 * 1024 * 1024, f"the process grew by {grown / 2**20:.0f} MiB for one refused call"


def test_a_wrong_array_under_the_value_limit_lists_twenty_problems(target: Target) -> None:
    items = [{"sku": i, "quantity": "many"} for i in range(30_000)]
    with Probe(target.base) as probe:
        response = _call(target, "place", {"order": {"customer": "c", "items": items}})
    assert len(response.content) < ANSWER_CAP
    details = _error(response)["details"]
    assert len(details) == 21
    assert details[-1]["type"] == "truncated"
    assert probe.slowest < PROBE_BOUND


def test_a_catastrophic_pattern_does_not_stall(target: Target) -> None:
    with Probe(target.base) as probe:
        refused = _call(target, "spell", {"word": "a" * 40 + "!"})
    assert _error(refused)["details"][0]["type"] == "pattern"
    assert probe.slowest < PROBE_BOUND


def test_over_websocket_a_small_message_never_becomes_a_huge_frame(plane_server: ServerProcess) -> None:
    items = [{"sku": 1, "quantity": "x"} for _ in range(9_000)]  # about 0.3 MB
    params = {"name": "place", "arguments": {"order": {"customer": "c", "items": items}}, "_meta": MODERN_META}
    with connect(plane_server.ws_url, subprotocols=["mcp"], max_size=None, open_timeout=10) as ws:  # type: ignore[list-item]
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}))
        frame = ws.recv(timeout=30)
    assert len(frame) < ANSWER_CAP
    assert json.loads(frame)["result"]["_meta"]["mcplane/error"]["code"] == "invalid_arguments"


# ------------------------------------------------------------------------------ properties
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=50),
    st.sampled_from(["\ud800", "a\udfffb", "\x00", "\u202e", "\ufeff", "é" * 20, "😀"]),
)
_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=6), st.dictionaries(st.text(max_size=10), children, max_size=6)
    ),
    max_leaves=40,
)
_shapes = st.one_of(
    _values,
    st.integers(min_value=65, max_value=300).map(lambda depth: json.loads("[" * depth + "]" * depth)),
    st.integers(min_value=1, max_value=200_000).map(lambda n: [0] * n),
    st.integers(min_value=1, max_value=100_000).map(lambda n: "\ud800" * n),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    tool=st.sampled_from(["place", "echo", "spell"]),
    arguments=st.one_of(
        st.dictionaries(st.sampled_from(["order", "value", "word", "extra"]), _shapes, max_size=3),
        _shapes.map(lambda value: {"order": {"customer": "c", "items": value}}),
    ),
)
def test_any_arguments_get_a_bounded_jsonrpc_answer(target: Target, tool: str, arguments: dict[str, Any]) -> None:
    response = _call(target, tool, arguments, timeout=30)
    assert response.status_code == 200, response.text[:500]
    assert len(response.content) < ANSWER_CAP
    body = response.json()
    assert body["jsonrpc"] == "2.0"
    if "error" in body:
        assert isinstance(body["error"]["code"], int)
    else:
        result = body["result"]
        if result.get("isError"):
            error = result["_meta"]["mcplane/error"]
            assert error["code"] in {"invalid_arguments", "internal_error"}, error
            assert "Traceback" not in result["content"][0]["text"]
    assert httpx.get(f"{target.base}/health", timeout=10).status_code == 200

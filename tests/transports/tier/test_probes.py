"""Probes alone: /health, /ready and /metrics are answered here; every other request passes."""

from __future__ import annotations

from mcplane.transports.tier.probes import Probes
from tests.transports.tier.asgi import Endpoint, drive, http_scope, refusal_of, websocket_scope


class Server:
    """A server as the probes see it: readiness checks and, maybe, metrics."""

    def __init__(self, checks: dict[str, tuple[bool, str]], metrics: bytes | None = None) -> None:
        self.checks = checks
        self.metrics = metrics

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        return all(ok for ok, _ in self.checks.values()), {k: v[1] for k, v in self.checks.items()}

    async def scrape(self) -> tuple[bytes, str] | None:
        return None if self.metrics is None else (self.metrics, "text/plain; version=0.0.4")


async def test_health_is_ok_whatever_the_server_says() -> None:
    answer = await drive(Probes(Endpoint(), Server({"server": (False, "not started")})), http_scope("GET", "/health"))
    assert (answer.status, answer.body) == (200, b'{"status":"ok"}')


async def test_ready_is_200_when_every_check_passes_else_503() -> None:
    ready = await drive(Probes(Endpoint(), Server({"server": (True, "ok")})), http_scope("GET", "/ready"))
    assert (ready.status, ready.json()) == (200, {"status": "ready", "checks": {"server": "ok"}})
    checks = {"server": (True, "ok"), "redis": (False, "unreachable")}
    not_ready = await drive(Probes(Endpoint(), Server(checks)), http_scope("GET", "/ready"))
    assert (not_ready.status, not_ready.json()) == (
        503,
        {"status": "not ready", "checks": {"server": "ok", "redis": "unreachable"}},
    )


async def test_metrics_when_served_here_else_404() -> None:
    served = await drive(Probes(Endpoint(), Server({}, b"up 1\n")), http_scope("GET", "/metrics"))
    assert (served.status, served.body, served.headers["content-type"]) == (200, b"up 1\n", "text/plain; version=0.0.4")
    elsewhere = await drive(Probes(Endpoint(), Server({})), http_scope("GET", "/metrics"))
    assert elsewhere.status == 404
    assert refusal_of(elsewhere)["data"] == {"code": "not_found"}


async def test_everything_else_passes() -> None:
    endpoint = Endpoint()
    probes = Probes(endpoint, Server({}))
    assert (await drive(probes, http_scope("POST", "/mcp"))).status == 200

    async def connect() -> dict[str, str]:
        return {"type": "websocket.connect"}

    await drive(probes, websocket_scope("/health"), connect)
    assert [scope["type"] for scope in endpoint.scopes] == ["http", "websocket"]

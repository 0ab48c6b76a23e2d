"""One ``mcplane run`` of the client tests' plane, and an endpoint for each transport."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ServerProcess, mcplane_command, start_server

CLIENT_APP = Path(__file__).resolve().parent / "client_app.py"

TRANSPORTS = ("http", "ws", "stdio")


@pytest.fixture(scope="session")
def client_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(CLIENT_APP, tmp_path=tmp_path_factory.mktemp("client-server"))
    yield server
    server.stop()


def stdio_command() -> str:
    return shlex.join(mcplane_command("run", str(CLIENT_APP)))


def endpoint_for(transport: str, server: ServerProcess) -> str:
    if transport == "http":
        return server.url
    if transport == "ws":
        return server.ws_url
    return stdio_command()


@pytest.fixture(params=TRANSPORTS)
def endpoint(request: pytest.FixtureRequest, client_server: ServerProcess) -> str:
    """The same plane over Streamable HTTP, WebSocket and stdio (a subprocess per test)."""
    return endpoint_for(request.param, client_server)


class FakeSleep:
    """Records the waits the client asks for and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def fake_sleep() -> FakeSleep:
    return FakeSleep()


class FakeTime:
    """A clock that only the client's own waits move: ``sleep`` advances ``now`` at once."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

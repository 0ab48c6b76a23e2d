"""Certificate rotation under load through ``mcplane run``: calls keep going over HTTPS on one
kept-alive connection and on new connections while the certificate files are replaced; new
connections get the new certificate, the old connection goes on with the old one, no call fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import orjson
from cryptography import x509

from mcplane.tls import client_context
from tests.conftest import QUICKSTART
from tests.test_tls import CA, start_tls_server

MODERN = "2026-07-28"
RELOAD_INTERVAL = "0.2"
"""Seconds between looks at the certificate files (``--tls-reload-interval``), so the test need
not wait the default 30 s."""


def _call(request_id: int) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {
            "name": "add",
            "arguments": {"a": request_id, "b": 1},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    }


HEADERS = {
    "content-type": "application/json",
    "accept": "application/json, text/event-stream",
    "mcp-protocol-version": MODERN,
    "mcp-method": "tools/call",
    "mcp-name": "add",
}


@dataclass
class Tally:
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    serials: list[int] = field(default_factory=list)


async def call_add(http: httpx2.AsyncClient, url: str, request_id: int) -> int:
    """One stateless ``tools/call add`` (which must answer ``request_id + 1``); returns the serial
    of the server certificate of the connection it went over."""
    response = await http.post(url, content=orjson.dumps(_call(request_id)), headers=HEADERS)
    assert response.status_code == 200, response.text
    text = response.text
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        text = next(line[5:] for line in text.splitlines() if line.startswith("data:"))
    body = orjson.loads(text)
    assert body["result"]["structuredContent"] == {"result": request_id + 1}, body
    der = response.extensions["network_stream"].get_extra_info("ssl_object").getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).serial_number


async def test_rotation_under_load(tmp_path: Path) -> None:
    ca = CA("rotation CA")
    served = start_tls_server(QUICKSTART, ca, tmp_path, "--tls-reload-interval", RELOAD_INTERVAL)
    try:
        old_serial = x509.load_pem_x509_certificate((tmp_path / "server.pem").read_bytes()).serial_number
        verify = client_context(ca=ca.pem)
        kept, fresh = Tally(), Tally()
        stop = anyio.Event()
        flowing = anyio.Event()  # both kinds of calls succeeded a few times
        rotated_seen = anyio.Event()  # a new connection got the new certificate
        settled = anyio.Event()  # and a few more new connections after that
        new_serial: list[int] = []
        seen_at: list[int] = []

        def progress() -> None:
            if kept.ok >= 3 and fresh.ok >= 3:
                flowing.set()
            if new_serial and fresh.serials and fresh.serials[-1] == new_serial[0]:
                rotated_seen.set()
                if not seen_at:
                    seen_at.append(fresh.ok)
            if seen_at and fresh.ok >= seen_at[0] + 3:
                settled.set()

        async def on_kept_alive(http: httpx2.AsyncClient) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    kept.serials.append(await call_add(http, served.url, n))
                    kept.ok += 1
                    progress()
                except Exception as exc:
                    kept.failures.append(repr(exc))

        async def on_new_connections() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    async with httpx2.AsyncClient(verify=verify) as http:  # a new TCP + TLS connection
                        serial = await call_add(http, served.url, n)
                    fresh.serials.append(serial)
                    fresh.ok += 1
                    progress()
                except Exception as exc:
                    fresh.failures.append(repr(exc))

        limits = httpx2.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx2.AsyncClient(verify=verify, limits=limits) as keeper:
            assert await call_add(keeper, served.url, 0) == old_serial  # the kept connection opens now
            async with anyio.create_task_group() as tg:
                tg.start_soon(on_kept_alive, keeper)
                tg.start_soon(on_new_connections)
                with anyio.fail_after(30):
                    await flowing.wait()  # load is flowing before the rotation
                    new = ca.server()
                    new_serial.append(new.cert.serial_number)
                    new.write(tmp_path, "server")  # certificate and key renamed into place
                    await rotated_seen.wait()
                    await settled.wait()
                stop.set()
            assert await call_add(keeper, served.url, 10_000) == old_serial  # the old connection lives on
    finally:
        served.stop()

    assert kept.failures == []
    assert fresh.failures == []
    assert set(kept.serials) == {old_serial}  # one connection throughout, with what it negotiated
    assert fresh.serials[0] == old_serial
    assert fresh.serials[-1] == new_serial[0]
    assert old_serial != new_serial[0]

"""TLS against real sockets, with a throwaway CA made here: handshakes, mTLS, CRLs, rotation."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import ssl
import subprocess
import warnings
from collections.abc import AsyncGenerator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mcplane import ConfigError, Plane
from mcplane.client import Client
from mcplane.tls import (
    CertificateReloader,
    clear_client_contexts,
    client_context,
    load_certificate,
    peer_principal,
    principal_from_certificate,
    server_context,
)
from tests.serving import ReadyServer

NOW = dt.datetime.now(dt.UTC)
REFUSED = (ssl.SSLError, ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError)


# ---------------------------------------------------------------------------------- a throwaway PKI
@dataclass(frozen=True)
class Issued:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def write(self, directory: Path, name: str) -> tuple[Path, Path]:
        """Write ``name.pem`` and ``name.key`` the way a rotation does: a new file renamed into place."""
        paths = (directory / f"{name}.pem", directory / f"{name}.key")
        for path, data in zip(paths, (self.cert_pem, self.key_pem), strict=True):
            _replace(path, data)
        return paths


def _replace(path: Path, data: bytes) -> None:
    staged = path.with_name(path.name + ".new")
    staged.write_bytes(data)
    os.replace(staged, path)


class CA:
    def __init__(self, name: str) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        self.issued = Issued(key, cert)

    @property
    def pem(self) -> bytes:
        return self.issued.cert_pem

    def issue(
        self,
        cn: str | None,
        *,
        client: bool = False,
        dns: Sequence[str] = (),
        uris: Sequence[str] = (),
        not_after: dt.datetime | None = None,
    ) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.issued.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=2))
            .not_valid_after(not_after or NOW + dt.timedelta(days=10))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.issued.key.public_key()), critical=False
            )
        )
        names = [x509.DNSName(name) for name in dns] + [x509.UniformResourceIdentifier(uri) for uri in uris]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return Issued(key, builder.sign(self.issued.key, hashes.SHA256()))

    def server(self, cn: str = "localhost") -> Issued:
        return self.issue(cn, dns=["localhost"])

    def crl(self, revoked: Sequence[Issued] = (), *, age: dt.timedelta = dt.timedelta(minutes=5)) -> bytes:
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.issued.cert.subject)
            .last_update(NOW - age)
            .next_update(NOW + dt.timedelta(days=7))
        )
        for issued in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(issued.cert.serial_number)
                .revocation_date(NOW - dt.timedelta(minutes=10))
                .build()
            )
        return builder.sign(self.issued.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA("mcplane test CA")


@pytest.fixture(scope="module")
def other_ca() -> CA:
    return CA("someone else's CA")


# ---------------------------------------------------------------------------------- a real TLS server
@dataclass
class Served:
    port: int
    seen: list[str]


@asynccontextmanager
async def tls_server(context: ssl.SSLContext) -> AsyncGenerator[Served]:
    """An asyncio TLS server that greets each client with who it is (the client certificate's
    principal) and then echoes lines."""
    seen: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        principal = peer_principal(writer.get_extra_info("ssl_object"))
        name = principal.subject if principal is not None else "-"
        seen.append(name)
        writer.write(f"hello {name}\n".encode())
        try:
            await writer.drain()
            while line := await reader.readline():
                writer.write(line)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    async with server:
        yield Served(server.sockets[0].getsockname()[1], seen)


async def _open(port: int, context: ssl.SSLContext) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost")


async def greet(port: int, context: ssl.SSLContext) -> tuple[str, x509.Certificate]:
    """Handshake, read the greeting, and return it with the server certificate that was presented."""
    with anyio.fail_after(10):
        reader, writer = await _open(port, context)
        try:
            greeting = (await reader.readuntil(b"\n")).decode().strip()
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        finally:
            writer.close()
    return greeting, x509.load_der_x509_certificate(der)


async def refused(port: int, context: ssl.SSLContext) -> BaseException:
    """The handshake fails. With TLS 1.3 a refused client certificate shows only as the server
    closing the connection once the client reads; with TLS 1.2 as an alert during the handshake."""
    with anyio.fail_after(10):
        try:
            reader, writer = await _open(port, context)
        except REFUSED as exc:
            return exc
        try:
            greeting = await reader.readuntil(b"\n")
        except REFUSED as exc:
            return exc
        finally:
            writer.close()
    pytest.fail(f"the handshake succeeded: {greeting!r}")


def _handshake(context: ssl.SSLContext, sock: socket.socket, *, server_side: bool) -> BaseException | None:
    try:
        with context.wrap_socket(sock, server_side=server_side, server_hostname=None if server_side else "localhost"):
            return None
    except (ssl.SSLError, OSError) as exc:
        return exc


async def verdict(server: ssl.SSLContext, client: ssl.SSLContext) -> str:
    """Why ``server`` refuses ``client``, as the server's own handshake reports it (asyncio's TLS
    server drops that reason, so this handshake runs on a blocking socket pair)."""
    server_sock, client_sock = socket.socketpair()
    failure: BaseException | None = None
    with server_sock, client_sock, anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, lambda: _handshake(client, client_sock, server_side=False))
            failure = await anyio.to_thread.run_sync(lambda: _handshake(server, server_sock, server_side=True))
    assert failure is not None, "the server accepted the handshake"
    return str(failure).lower()


def trusting(ca: CA, client: Issued | None = None) -> ssl.SSLContext:
    """A plain client context (not mcplane's) trusting ``ca``, presenting ``client`` if given."""
    context = ssl.create_default_context(cadata=ca.pem.decode())
    if client is not None:
        load_certificate(context, client.cert_pem, client.key_pem)
    return context


# ---------------------------------------------------------------------------------- server contexts
async def test_a_handshake_with_the_right_ca(ca: CA, tmp_path: Path) -> None:
    server = ca.server()
    async with tls_server(server_context(*server.write(tmp_path, "server"))) as served:
        greeting, presented = await greet(served.port, trusting(ca))
    assert greeting == "hello -"
    assert presented.serial_number == server.cert.serial_number


async def test_a_client_trusting_another_ca_refuses(ca: CA, other_ca: CA, tmp_path: Path) -> None:
    async with tls_server(server_context(*ca.server().write(tmp_path, "server"))) as served:
        error = await refused(served.port, trusting(other_ca))
    assert isinstance(error, ssl.SSLCertVerificationError)


async def test_old_protocols_and_weak_ciphers_are_refused(ca: CA, tmp_path: Path) -> None:
    async with tls_server(server_context(*ca.server().write(tmp_path, "server"))) as served:
        old = trusting(ca)
        with warnings.catch_warnings():  # asking for TLS 1.1 is deprecated: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            old.maximum_version = ssl.TLSVersion.TLSv1_1
        await refused(served.port, old)
        weak = trusting(ca)
        weak.maximum_version = ssl.TLSVersion.TLSv1_2
        weak.set_ciphers("AES128-SHA:AES256-SHA")  # no forward secrecy, no AEAD
        await refused(served.port, weak)
        tls12 = trusting(ca)
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        greeting, _ = await greet(served.port, tls12)
    assert greeting == "hello -"


async def test_pem_text_from_a_secret_works_everywhere(ca: CA) -> None:
    server, agent = ca.server(), ca.issue("agent-7", client=True)
    context = server_context(
        server.cert_pem.decode(), server.key_pem.decode(), client_ca=ca.pem.decode(), crl=ca.crl().decode()
    )
    async with tls_server(context) as served:
        greeting, _ = await greet(served.port, client_context(ca=ca.pem, cert=agent.cert_pem, key=agent.key_pem))
    assert greeting == "hello agent-7"


def test_bad_material_is_a_config_error(ca: CA, tmp_path: Path) -> None:
    cert, key = ca.server().write(tmp_path, "server")
    with pytest.raises(ConfigError, match=r"cannot load the TLS certificate from .*missing\.pem"):
        server_context(tmp_path / "missing.pem", key)
    _, wrong_key = ca.server().write(tmp_path, "other")
    with pytest.raises(ConfigError, match="cannot load the TLS certificate"):
        server_context(cert, wrong_key)
    with pytest.raises(ConfigError, match="CRL needs client_ca"):
        server_context(cert, key, crl=ca.crl())
    with pytest.raises(ConfigError, match=r"older than 1\.2"):
        server_context(cert, key, minimum_version=ssl.TLSVersion.TLSv1_1)
    with pytest.raises(ConfigError, match="cannot load the CA bundle from PEM text"):
        server_context(cert, key, client_ca="-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")


# ---------------------------------------------------------------------------------- mTLS
@pytest.fixture
def mtls(ca: CA, tmp_path: Path) -> tuple[ssl.SSLContext, Issued]:
    revoked = ca.issue("revoked-agent", client=True)
    crl = tmp_path / "clients.crl"
    crl.write_bytes(ca.crl([revoked]))
    cert, key = ca.server().write(tmp_path, "server")
    return server_context(cert, key, client_ca=ca.pem, crl=crl), revoked


async def test_mtls_accepts_a_good_client_certificate(ca: CA, mtls: tuple[ssl.SSLContext, Issued]) -> None:
    agent = ca.issue("agent-1", client=True, uris=["spiffe://example.org/agent/1"])
    async with tls_server(mtls[0]) as served:
        greeting, _ = await greet(served.port, trusting(ca, agent))
    assert greeting == "hello agent-1"


async def test_mtls_refuses_a_missing_certificate(ca: CA, mtls: tuple[ssl.SSLContext, Issued]) -> None:
    async with tls_server(mtls[0]) as served:
        await refused(served.port, trusting(ca))
        assert served.seen == []


async def test_mtls_refuses_a_revoked_certificate(ca: CA, mtls: tuple[ssl.SSLContext, Issued]) -> None:
    async with tls_server(mtls[0]) as served:
        await refused(served.port, trusting(ca, mtls[1]))
        assert served.seen == []
    assert "certificate revoked" in await verdict(mtls[0], trusting(ca, mtls[1]))


async def test_mtls_refuses_an_expired_certificate(ca: CA, mtls: tuple[ssl.SSLContext, Issued]) -> None:
    expired = ca.issue("old-agent", client=True, not_after=NOW - dt.timedelta(hours=1))
    async with tls_server(mtls[0]) as served:
        await refused(served.port, trusting(ca, expired))
        assert served.seen == []
    assert "certificate has expired" in await verdict(mtls[0], trusting(ca, expired))


async def test_mtls_refuses_a_certificate_from_another_ca(
    ca: CA, other_ca: CA, mtls: tuple[ssl.SSLContext, Issued]
) -> None:
    async with tls_server(mtls[0]) as served:
        await refused(served.port, trusting(ca, other_ca.issue("intruder", client=True)))
        assert served.seen == []


async def test_an_optional_client_certificate(ca: CA, tmp_path: Path) -> None:
    context = server_context(*ca.server().write(tmp_path, "server"), client_ca=ca.pem, client_cert="optional")
    async with tls_server(context) as served:
        anonymous, _ = await greet(served.port, trusting(ca))
        named, _ = await greet(served.port, trusting(ca, ca.issue("agent-2", client=True)))
    assert (anonymous, named) == ("hello -", "hello agent-2")


def test_the_principal_of_a_certificate(ca: CA) -> None:
    agent = ca.issue("agent-1", client=True, uris=["spiffe://example.org/agent/1"], dns=["agent-1.internal"])
    principal = principal_from_certificate(agent.cert.public_bytes(serialization.Encoding.DER))
    assert principal.subject == "agent-1"
    assert principal.claims["auth"] == "mtls"
    assert principal.claims["san_uri"] == ["spiffe://example.org/agent/1"]
    assert principal.claims["san_dns"] == ["agent-1.internal"]
    assert principal.claims["serial"] == format(agent.cert.serial_number, "x")
    assert principal.claims["issuer"] == "CN=mcplane test CA"
    san_only = ca.issue(None, client=True, uris=["spiffe://example.org/agent/2"])
    assert principal_from_certificate(san_only.cert.public_bytes(serialization.Encoding.DER)).subject == (
        "spiffe://example.org/agent/2"
    )
    nameless = ca.issue(None, client=True)
    with pytest.raises(ValueError, match="neither a CN nor a SAN"):
        principal_from_certificate(nameless.cert.public_bytes(serialization.Encoding.DER))


# ---------------------------------------------------------------------------------- rotation
async def test_rotation_reaches_new_handshakes_and_spares_open_connections(ca: CA, tmp_path: Path) -> None:
    first, second = ca.server("first"), ca.server("second")
    cert, key = first.write(tmp_path, "server")
    context = server_context(cert, key)
    reloader = CertificateReloader(context, cert, key)
    assert reloader.check() is False  # nothing changed yet
    async with tls_server(context) as served:
        _, presented = await greet(served.port, trusting(ca))
        assert presented.serial_number == first.cert.serial_number
        with anyio.fail_after(10):
            reader, writer = await _open(served.port, trusting(ca))
            assert await reader.readuntil(b"\n") == b"hello -\n"

        second.write(tmp_path, "server")
        assert reloader.check() is True
        assert reloader.check() is False
        _, presented = await greet(served.port, trusting(ca))
        assert presented.serial_number == second.cert.serial_number

        with anyio.fail_after(10):  # the connection opened before the rotation goes on
            writer.write(b"still here\n")
            await writer.drain()
            assert await reader.readuntil(b"\n") == b"still here\n"
        writer.close()
    assert reloader.reloads == 1


async def test_a_half_done_rotation_keeps_the_old_certificate(ca: CA, tmp_path: Path) -> None:
    first, second = ca.server("first"), ca.server("second")
    cert, key = first.write(tmp_path, "server")
    context = server_context(cert, key)
    reloader = CertificateReloader(context, cert, key)
    async with tls_server(context) as served:
        _replace(cert, second.cert_pem)  # the certificate is new, its key not yet
        assert reloader.check() is False
        _, presented = await greet(served.port, trusting(ca))
        assert presented.serial_number == first.cert.serial_number
        key.unlink()
        assert reloader.check() is False
        _replace(key, second.key_pem)
        assert reloader.check() is True
        _, presented = await greet(served.port, trusting(ca))
        assert presented.serial_number == second.cert.serial_number


async def test_a_new_crl_is_picked_up_without_a_restart(ca: CA, tmp_path: Path) -> None:
    agent = ca.issue("agent-9", client=True)
    crl = tmp_path / "clients.crl"
    crl.write_bytes(ca.crl(age=dt.timedelta(hours=2)))
    cert, key = ca.server().write(tmp_path, "server")
    context = server_context(cert, key, client_ca=ca.pem, crl=crl)
    reloader = CertificateReloader(context, cert, key, crl=crl)
    async with tls_server(context) as served:
        greeting, _ = await greet(served.port, trusting(ca, agent))
        assert greeting == "hello agent-9"
        _replace(crl, ca.crl([agent], age=dt.timedelta(minutes=1)))
        assert reloader.check() is True
        await refused(served.port, trusting(ca, agent))


async def test_the_reloader_runs_on_its_own(ca: CA, tmp_path: Path) -> None:
    cert, key = ca.server("first").write(tmp_path, "server")
    reloader = CertificateReloader(server_context(cert, key), cert, key)
    ticks: list[float] = []

    async def sleep(seconds: float) -> None:
        ticks.append(seconds)
        if len(ticks) == 2:
            ca.server("second").write(tmp_path, "server")
        if len(ticks) == 4:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await reloader.run(5.0, sleep=sleep)
    assert ticks == [5.0] * 4
    assert reloader.reloads == 1


# ---------------------------------------------------------------------------------- client side
async def test_client_contexts_verify_by_default(ca: CA, tmp_path: Path) -> None:
    async with tls_server(server_context(*ca.server().write(tmp_path, "server"))) as served:
        await refused(served.port, client_context())  # the system CAs do not know this CA
        greeting, _ = await greet(served.port, client_context(ca=ca.pem))
        assert greeting == "hello -"
        wrong_name = client_context(ca=ca.pem)
        with anyio.fail_after(10), pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
            await asyncio.open_connection("127.0.0.1", served.port, ssl=wrong_name, server_hostname="example.com")


async def test_client_contexts_present_a_client_certificate(
    ca: CA, mtls: tuple[ssl.SSLContext, Issued], tmp_path: Path
) -> None:
    cert, key = ca.issue("upstream-caller", client=True).write(tmp_path, "caller")
    async with tls_server(mtls[0]) as served:
        greeting, _ = await greet(served.port, client_context(ca=ca.pem, cert=cert, key=key))
    assert greeting == "hello upstream-caller"


def test_client_contexts_are_cached_per_config(ca: CA, tmp_path: Path) -> None:
    clear_client_contexts()
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(ca.pem)
    first = client_context(ca=bundle)
    assert client_context(ca=bundle) is first
    assert client_context(ca=str(bundle)) is first
    assert client_context(ca=ca.pem) is not first
    assert client_context(ca=ca.pem) is client_context(ca=ca.pem)
    _replace(bundle, ca.pem)  # a rotated file (a new inode) is a new configuration
    assert client_context(ca=bundle) is not first
    with pytest.raises(ConfigError, match="needs its certificate"):
        client_context(key=bundle)


# ---------------------------------------------------------------------------------- HTTPS end to end
async def test_the_client_calls_a_plane_over_https_with_mtls(ca: CA, tmp_path: Path) -> None:
    plane = Plane("tls")

    @plane.tool()
    def hello(name: str) -> str:
        return f"hello {name}"

    context = server_context(*ca.server().write(tmp_path, "server"), client_ca=ca.pem)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        plane.http_app(), lifespan="on", log_level="warning", ssl_context_factory=lambda _config, _default: context
    )
    server = ReadyServer(config)
    agent = ca.issue("agent-https", client=True)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        with anyio.fail_after(10):
            await server.ready.wait()
        try:
            tls = client_context(ca=ca.pem, cert=agent.cert_pem, key=agent.key_pem)
            async with Client(f"https://localhost:{port}/mcp", tls=tls) as client:
                result = await client.call_tool("hello", {"name": "over TLS"})
            assert result.structured_content == {"result": "hello over TLS"}
            with pytest.raises(httpx2.TransportError):
                async with Client(f"https://localhost:{port}/mcp", tls=client_context(ca=ca.pem)):
                    pytest.fail("connected without a client certificate")
        finally:
            server.should_exit = True
    sock.close()


# ---------------------------------------------------------------------------------- `mcplane run` over TLS
@dataclass
class TLSProcess:
    """An ``mcplane run ... --tls-cert`` subprocess answering ``/health`` over HTTPS."""

    proc: subprocess.Popen[bytes]
    port: int
    stderr_path: Path

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}/mcp"

    @property
    def ws_url(self) -> str:
        return f"wss://localhost:{self.port}/mcp"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)


def start_tls_server(
    target: Path | str,
    ca: CA,
    tmp: Path,
    *flags: str,
    health_context: ssl.SSLContext | None = None,
    gateway: bool = False,
) -> TLSProcess:
    """``mcplane run TARGET --transport http --tls-cert ... FLAGS`` (``gateway``: ``mcplane gateway
    --config TARGET ...``) on a free port, once ``/health`` answers over HTTPS (``health_context``:
    how to connect for that, by default trusting ``ca``)."""
    from tests.conftest import REPO_ROOT, free_port, mcplane_command

    cert, key = ca.server().write(tmp, "server")
    port = free_port()
    stderr_path = tmp / f"server-{port}.stderr"
    command = ("gateway", "--config", str(target)) if gateway else ("run", str(target))
    argv = mcplane_command(*command, "--transport", "http", "--port", str(port))
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            [*argv, "--tls-cert", str(cert), "--tls-key", str(key), *flags],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    server = TLSProcess(proc, port, stderr_path)
    try:
        with anyio.from_thread.start_blocking_portal() as portal:
            portal.call(_wait_https, port, health_context or trusting(ca), proc, stderr_path)
    except BaseException:
        server.stop()
        raise
    return server


async def _wait_https(port: int, verify: ssl.SSLContext, proc: subprocess.Popen[bytes], stderr: Path) -> None:
    with anyio.fail_after(30):
        async with httpx2.AsyncClient(verify=verify) as http:
            while True:
                if proc.poll() is not None:
                    log = await anyio.Path(stderr).read_text(errors="replace")
                    pytest.fail(f"the server exited during start-up: {log}")
                try:
                    if (await http.get(f"https://localhost:{port}/health")).status_code == 200:
                        return
                except httpx2.TransportError:
                    pass
                await anyio.sleep(0.05)


# ---------------------------------------------------------------------------------- the ASGI TLS extension
@pytest.mark.parametrize(("http", "ws"), [("h11", "websockets-sansio"), ("httptools", "auto")])
async def test_uvicorn_protocols_carry_the_tls_extension(ca: CA, tmp_path: Path, http: str, ws: str) -> None:
    """Each uvicorn protocol mcplane may run, subclassed: the verified client certificate is in
    every request's scope, for HTTP and for WebSocket sessions."""
    from mcplane.transports.tls_scope import tls_protocols

    seen: list[tuple[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        tls = scope.get("extensions", {}).get("tls", {})
        seen.append((scope["type"], tls.get("client_cert_name")))
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1000})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(tls.get("client_cert_chain", []))).encode()})

    http_class, ws_class = tls_protocols(http, ws)
    context = server_context(*ca.server().write(tmp_path, "server"), client_ca=ca.pem, client_cert="optional")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_level="warning",
        http=http_class,
        ws=ws_class,
        ssl_context_factory=lambda _config, _default: context,
    )
    server = ReadyServer(config)
    agent = ca.issue("agent-ext", client=True)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        try:
            with anyio.fail_after(10):
                await server.ready.wait()
                named = client_context(ca=ca.pem, cert=agent.cert_pem, key=agent.key_pem)
                async with httpx2.AsyncClient(verify=named) as client:
                    assert (await client.get(f"https://localhost:{port}/")).text == "1"
                    assert (await client.get(f"https://localhost:{port}/again")).text == "1"
                async with httpx2.AsyncClient(verify=client_context(ca=ca.pem)) as client:
                    assert (await client.get(f"https://localhost:{port}/")).text == "0"
                from websockets.asyncio.client import connect

                async with connect(f"wss://localhost:{port}/", ssl=named) as websocket:
                    await websocket.wait_closed()
        finally:
            server.should_exit = True
    sock.close()
    assert seen == [
        ("http", "CN=agent-ext"),
        ("http", "CN=agent-ext"),
        ("http", None),
        ("websocket", "CN=agent-ext"),
    ]

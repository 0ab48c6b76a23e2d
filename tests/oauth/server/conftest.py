"""mcplane as the authorization server, served by ``mcplane run`` (a real uvicorn on a real
socket), with the test identity provider (``idp``) as the upstream login.

``start_as`` writes a config naming the port it will listen on (issuer and resource are URLs
on it), starts the plane of ``app.py`` and waits for ``/health``. ``Browser`` is the person:
it carries mcplane's cookie, answers the consent page, and lets ``idp.login`` do the sign-in
at the provider, returning where mcplane finally redirects (the client's redirect URI).
"""

from __future__ import annotations

import html.parser
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
import redis
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mcplane.auth import hash_api_key
from tests.conftest import REPO_ROOT, START_TIMEOUT, STOP_TIMEOUT, free_port, mcplane_command
from tests.oauth.conftest import IdP

HERE = Path(__file__).resolve().parent
REDIS_URL = "redis://127.0.0.1:6379/0"
APP = HERE / "app.py"
STATE_KEY = "k" * 40
API_KEY = "mcp_test_api_key_of_the_ci_bot_0123456789"
OLD_STATE_KEY = "o" * 40


def redis_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        return False
    return True


def _state_keys(client: redis.Redis, pattern: str) -> list[bytes]:
    return list(client.scan_iter(match=pattern, count=1000))  # pyright: ignore[reportUnknownArgumentType]


@pytest.fixture(scope="module")
def redis_key_prefix() -> Iterator[str]:
    """An ``oauth.key_prefix`` of this module's own in the shared Redis: the servers' records go
    under it, and are deleted when the module is done (checked: some were written there, and
    none is left)."""
    if not redis_up():
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    prefix = f"oauth-test-{secrets.token_hex(8)}:"
    pattern = f"mcplane:state:{prefix}*"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        written = _state_keys(client, pattern)
        if written:
            client.delete(*written)
        left = _state_keys(client, pattern)
    finally:
        client.close()
    assert written, f"no record was written under {prefix!r}: oauth.key_prefix was not honoured"
    assert not left, left


def es256_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@dataclass
class AS:
    """One ``mcplane run`` serving the MCP endpoint and the authorization server."""

    proc: subprocess.Popen[bytes]
    port: int
    stderr_path: Path
    issuer: str

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def as_config(
    port: int,
    idp: IdP,
    login_client: tuple[str, str | None],
    keys_dir: Path,
    *,
    issuer_port: int | None = None,
    redis_url: str | None = None,
    key_prefix: str | None = None,
    extra: dict[str, object] | None = None,
) -> dict[str, object]:
    """The config of a plane on ``port``; ``issuer_port``: the port its issuer names (a replica
    behind one address names the same issuer as its peers)."""
    issuer = f"http://127.0.0.1:{issuer_port or port}"
    client_id, client_secret = login_client
    signing = [
        {"kid": "current", "private_key": f"${{file:{keys_dir / 'current.pem'}}}", "status": "active"},
        {"kid": "previous", "private_key": f"${{file:{keys_dir / 'previous.pem'}}}"},
    ]
    oauth: dict[str, object] = {
        "issuer": issuer,
        "signing_keys": signing,
        "state_keys": [STATE_KEY, OLD_STATE_KEY],
        "login": {"issuer": idp.issuer, "client_id": client_id, "client_secret": client_secret},
        "metadata_documents": {"allow_loopback_for_tests_only": True, "max_bytes": 4096, "timeout": "2s"},
    }
    auth: dict[str, object] = {
        "resource": f"{issuer}/mcp",
        "scopes_supported": ["tools.read", "tools.write"],
        # Alongside the tokens mcplane issues: an API key, and tokens the provider issues itself.
        "api_keys": [{"id": "ci", "hash": hash_api_key(API_KEY), "subject": "ci-bot", "roles": ["deployer"]}],
        "jwt": {"issuer": idp.issuer, "jwks_url": f"{idp.issuer}/jwks"},
    }
    config: dict[str, object] = {
        "auth": auth,
        "oauth": oauth,
        "observability": {"log_level": "debug"},
        "server": {"shutdown_grace": "1s"},
    }
    if redis_url is not None:
        config["redis_url"] = redis_url
        config["state"] = {"backend": "redis"}
    if key_prefix is not None:
        oauth["key_prefix"] = key_prefix
    for key, value in (extra or {}).items():
        section = config.get(key)
        config[key] = {**section, **value} if isinstance(section, dict) and isinstance(value, dict) else value
    return config


def write_keys(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("current", "previous"):
        (directory / f"{name}.pem").write_text(es256_pem())
    return directory


def start_as(config: dict[str, object], port: int, tmp_path: Path, *, name: str = "as", gateway: bool = False) -> AS:
    """``mcplane run app.py`` (or ``mcplane gateway``) on ``port`` with ``config``."""
    config_path = tmp_path / f"{name}-{port}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    stderr_path = tmp_path / f"{name}-{port}.stderr"
    if gateway:
        command = mcplane_command("gateway", "--config", str(config_path), "--port", str(port))
    else:
        command = [
            *mcplane_command("run", str(APP), "--transport", "http", "--port", str(port)),
            "--config",
            str(config_path),
        ]
    with stderr_path.open("wb") as errlog:
        proc = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env={**os.environ, "MCPLANE_TEST": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errlog,
        )
    oauth = config["oauth"]
    assert isinstance(oauth, dict)
    server = AS(proc, port, stderr_path, str(oauth["issuer"]))  # pyright: ignore[reportUnknownArgumentType]
    deadline = time.monotonic() + START_TIMEOUT
    while not _healthy(server.base):
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"mcplane did not start: {server.stderr()[-3000:]}")
        try:
            proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
    return server


@dataclass
class Plant:
    """What a test needs: the server, the provider, the config it was started with."""

    server: AS
    idp: IdP
    config: dict[str, object]


@pytest.fixture(scope="module")
def authorization_server(idp: IdP, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plant]:
    """One server per test module (its state is per flow: tests never share a client or a grant)."""
    tmp_path = tmp_path_factory.mktemp("oauth-as")
    port = free_port()
    login_client = idp.register_client([f"http://127.0.0.1:{port}/oauth/callback"])
    config = as_config(port, idp, login_client, write_keys(tmp_path / "keys"))
    server = start_as(config, port, tmp_path)
    try:
        yield Plant(server, idp, config)
    finally:
        server.stop()


class _Form(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.action = values.get("action", "")
        elif tag == "input" and values.get("type") == "hidden":
            self.fields[values.get("name", "")] = values.get("value", "")


def consent_form(page: str) -> tuple[str, dict[str, str]]:
    form = _Form()
    form.feed(page)
    return form.action, form.fields


class Browser:
    """A person's browser: one cookie jar for mcplane, the provider's sign-in done by ``idp.login``."""

    def __init__(self, idp: IdP, *, user: str = "alice") -> None:
        self.idp = idp
        self.user = user
        self.http = httpx.AsyncClient(follow_redirects=False, timeout=10)
        self.seen: list[str] = []
        """Every URL visited (the flow's codes and states, for the log assertion)."""

    async def aclose(self) -> None:
        await self.http.aclose()

    async def consent_page(self, authorize_url: str) -> httpx.Response:
        self.seen.append(authorize_url)
        return await self.http.get(authorize_url)

    async def authorize(self, authorize_url: str, *, decision: str = "allow", base: str | None = None) -> str:
        """Go through consent and the provider's sign-in; the URL mcplane finally redirects to."""
        page = await self.consent_page(authorize_url)
        assert page.status_code == 200, page.text[:500]
        action, fields = consent_form(page.text)
        consent = await self.http.post(urljoin(authorize_url, action), data={**fields, "decision": decision})
        assert consent.status_code == 303, consent.text[:500]
        location = consent.headers["location"]
        self.seen.append(location)
        if decision != "allow":
            return location
        callback = await self.idp.login(location, user=self.user)
        self.seen.append(callback)
        back = await self.http.get(callback)
        assert back.status_code == 303, back.text[:500]
        self.seen.append(back.headers["location"])
        return back.headers["location"]


def query_of(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def secrets_in(values: Sequence[str]) -> list[str]:
    """The codes, states and tokens in ``values`` (URLs or bare tokens), each at least 16 characters."""
    found: list[str] = []
    for value in values:
        if "://" in value:
            found += [v for k, v in query_of(value).items() if k in ("code", "state") and len(v) >= 16]
        elif len(value) >= 16:
            found.append(value)
    return found

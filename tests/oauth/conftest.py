"""The test identity provider: npm ``oidc-provider`` (a certified OpenID Connect implementation)
started on a free loopback port, with users, dynamic client registration and token exchange.

``idp`` (module-scoped) gives the issuer, registers clients, and completes a user's login and
consent over HTTP (following the provider's interaction pages), returning the redirect the
browser would be sent to. Skips when the provider is not installed; fails under ``CI``.
"""

from __future__ import annotations

import base64
import hashlib
import html.parser
import os
import secrets
import select
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import orjson
import pytest

from tests.conftest import REPO_ROOT, START_TIMEOUT, STOP_TIMEOUT

HERE = Path(__file__).resolve().parent
IDP_SCRIPT = HERE / "idp" / "idp.mjs"
TOOLS = REPO_ROOT / ".tools"
NODE22 = TOOLS / "alpha" / "node_modules" / "node" / "bin" / "node"
OIDC_PROVIDER = TOOLS / "oauth" / "node_modules"
"""Where scripts/install-test-deps.sh installs oidc-provider 9.13.3."""
USERS = ("alice", "bob", "mallory")
MAX_STEPS = 20


def require(path: Path, what: str) -> Path:
    """``path``, or a skip that says how to get it (a failure under CI, which must run these tests)."""
    if not path.exists():
        message = f"{what} not found at {path.relative_to(REPO_ROOT)} (bash scripts/install-test-deps.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must run the OAuth tests")
        pytest.skip(message)
    return path


class _Forms(html.parser.HTMLParser):
    """The forms of an interaction page (action and hidden inputs) and its links."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append((values.get("action", ""), {}))
        elif tag == "input" and self.forms and values.get("type") == "hidden":
            self.forms[-1][1][values.get("name", "")] = values.get("value", "")
        elif tag == "a" and "href" in values:
            self.links.append(values["href"])


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@dataclass
class IdP:
    issuer: str
    process: subprocess.Popen[bytes]
    log: Path
    clients: dict[str, str | None] = field(default_factory=lambda: {})

    def register_client(
        self,
        redirect_uris: list[str],
        *,
        auth_method: str = "client_secret_basic",
        grant_types: list[str] | None = None,
    ) -> tuple[str, str | None]:
        """A new client by dynamic registration (RFC 7591): ``(client_id, client_secret)``."""
        body: dict[str, object] = {
            "redirect_uris": redirect_uris,
            "token_endpoint_auth_method": auth_method,
            "grant_types": grant_types or ["authorization_code"],
            "response_types": ["code"] if redirect_uris else [],
        }
        answer = httpx.post(f"{self.issuer}/reg", json=body, timeout=10)
        assert answer.status_code == 201, answer.text
        client = answer.json()
        self.clients[client["client_id"]] = client.get("client_secret")
        return client["client_id"], client.get("client_secret")

    def sign(self, claims: dict[str, object]) -> str:
        """A JWT signed with the provider's own key (test-only route): any claims, well signed."""
        answer = httpx.post(f"{self.issuer}/test/sign", json=claims, timeout=10)
        answer.raise_for_status()
        return answer.json()["token"]

    async def login(self, authorization_url: str, *, user: str = "alice", deny: bool = False) -> str:
        """Complete ``user``'s login and consent at the provider (or cancel it, ``deny``) and return
        the redirect the browser would follow back to the client (with code and state, or error)."""
        async with httpx.AsyncClient(follow_redirects=False, timeout=10) as browser:
            url = authorization_url
            answer = await browser.get(url)
            for _ in range(MAX_STEPS):
                if answer.is_redirect:
                    url = urljoin(url, answer.headers["location"])
                    if not url.startswith(self.issuer + "/"):
                        return url
                    answer = await browser.get(url)
                    continue
                assert answer.status_code == 200, f"the provider answered {answer.status_code}: {answer.text[:500]}"
                page = _Forms()
                page.feed(answer.text)
                if deny:
                    abort = next(link for link in page.links if link.endswith("/abort"))
                    url = urljoin(url, abort)
                    answer = await browser.get(url)
                    continue
                assert page.forms, f"no form on the provider's page: {answer.text[:500]}"
                action, fields = page.forms[0]
                if fields.get("prompt") == "login":
                    fields = {**fields, "login": user, "password": "any"}
                url = urljoin(url, action)
                answer = await browser.post(url, data=fields)
            raise AssertionError(f"the login did not come back within {MAX_STEPS} steps")

    async def user_token(self, *, user: str = "alice", resource: str) -> str:
        """An access token (a JWT for ``resource``) that ``user`` got by logging in with a client of
        the provider's: the token an MCP client would present."""
        redirect_uri = "http://127.0.0.1/callback"
        client_id, client_secret = self.register_client([redirect_uri], grant_types=["authorization_code"])
        assert client_secret is not None
        verifier, challenge = pkce_pair()
        query = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": "openid",
            "state": secrets.token_urlsafe(16),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "resource": resource,
        }
        async with httpx.AsyncClient(timeout=10) as http:
            discovery = (await http.get(f"{self.issuer}/.well-known/openid-configuration")).json()
            callback = await self.login(f"{discovery['authorization_endpoint']}?{urlencode(query)}", user=user)
            code = parse_qs(urlsplit(callback).query)["code"][0]
            answer = await http.post(
                discovery["token_endpoint"],
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": redirect_uri,
                    "code_verifier": verifier,
                    "resource": resource,
                },
                auth=(client_id, client_secret),
            )
        assert answer.status_code == 200, answer.text
        return answer.json()["access_token"]

    def exchanges(self) -> int:
        """Token exchanges the provider has answered so far (test-only route)."""
        return int(httpx.get(f"{self.issuer}/test/stats", timeout=10).json()["exchanges"])

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")


def _read_ready_line(process: subprocess.Popen[bytes], log: Path) -> dict[str, str]:
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([process.stdout], [], [], left)
        if ready:
            line = process.stdout.readline()
            if not line:
                break
            return orjson.loads(line)
    process.kill()
    process.wait(timeout=STOP_TIMEOUT)
    pytest.fail(f"the identity provider did not start within {START_TIMEOUT:g} s: {log.read_text(errors='replace')}")


@contextmanager
def running_idp() -> Generator[IdP]:
    """The test identity provider for the block (skips without it; fails without it under CI)."""
    node = require(NODE22, "Node 22")
    require(OIDC_PROVIDER / "oidc-provider", "oidc-provider")
    with tempfile.TemporaryDirectory(prefix="idp-") as directory:
        log = Path(directory) / "idp.log"
        with log.open("wb") as stderr:
            process = subprocess.Popen(
                [str(node), str(IDP_SCRIPT)],
                stdout=subprocess.PIPE,
                stderr=stderr,
                env={**os.environ, "OIDC_PROVIDER_MODULES": str(OIDC_PROVIDER)},
            )
        try:
            ready = _read_ready_line(process, log)
            yield IdP(issuer=ready["issuer"], process=process, log=log)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=STOP_TIMEOUT)
            if process.stdout is not None:
                process.stdout.close()


@pytest.fixture(scope="module")
def idp() -> Iterator[IdP]:
    """The test identity provider, one per test module."""
    with running_idp() as provider:
        yield provider


class Rewriting(httpx.AsyncBaseTransport):
    """A real transport whose JSON answers from paths ending in ``path`` pass through ``rewrite``
    first (a man in the middle, for tests of what mcplane does with a forged answer). ``seen``
    keeps every JSON answer as received."""

    def __init__(self, path: str, rewrite: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._path = path
        self._rewrite = rewrite
        self.seen: list[dict[str, Any]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if not request.url.path.endswith(self._path):
            return response
        body = orjson.loads(await response.aread())
        self.seen.append(body)
        content = orjson.dumps(self._rewrite(dict(body)))
        return httpx.Response(response.status_code, headers={"content-type": "application/json"}, content=content)

    async def aclose(self) -> None:
        await self._inner.aclose()

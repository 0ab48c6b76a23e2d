"""AuthASGI: 401 + WWW-Authenticate, RFC 9728 metadata, principal hand-off, WebSocket refusal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import orjson
import pytest
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from pydantic import SecretStr
from starlette.types import Message, Receive, Scope, Send

from mcplane.auth import (
    SCOPE_KEY,
    APIKey,
    AuthASGI,
    AuthConfig,
    Authenticator,
    JWTConfig,
    StaticKey,
    current_principal,
    generate_api_key,
    metadata_url,
)
from mcplane.context import Principal
from tests.auth.auth_support import AUDIENCE, HS_SECRET, ISSUER, FakeClock, JWKSServer, mint

KEY, DIGEST = generate_api_key()
METADATA = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"


class Inner:
    """The protected app: records what reached it."""

    def __init__(self) -> None:
        self.scopes: list[Scope] = []
        self.principals: list[Principal | None] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes.append(scope)
        self.principals.append(current_principal.get())
        if scope["type"] == "lifespan":
            return
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1000})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"inner"})


def _config(**options: Any) -> AuthConfig:
    defaults: dict[str, Any] = {
        "resource": AUDIENCE,
        "authorization_servers": [ISSUER],
        "scopes_supported": ["tools.read", "tools.write"],
        "jwt": JWTConfig(issuer=ISSUER, keys=[StaticKey(secret=SecretStr(HS_SECRET))]),
        "api_keys": [APIKey(id="ci", hash=DIGEST, subject="ci-bot")],
    }
    return AuthConfig(**{**defaults, **options})


@pytest.fixture
def inner() -> Inner:
    return Inner()


@pytest.fixture
async def client(inner: Inner) -> AsyncIterator[httpx.AsyncClient]:
    app = AuthASGI(inner, Authenticator(_config()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000") as c:
        yield c


def _error(response: httpx.Response) -> dict[str, Any]:
    body = orjson.loads(response.content)
    assert body["jsonrpc"] == "2.0"
    assert body["id"] is None
    return body["error"]


async def test_no_credential_gets_401_with_the_metadata_pointer(client: httpx.AsyncClient, inner: Inner) -> None:
    response = await client.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        f'Bearer resource_metadata="{METADATA}", scope="tools.read tools.write"'
    )
    error = _error(response)
    assert error["code"] == -32000
    assert error["data"]["code"] == "unauthenticated"
    assert error["data"]["details"] == {"reason": "missing_token"}
    assert response.headers["cache-control"] == "no-store"
    assert inner.scopes == []


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("x.y.z", "invalid_token"),
        (mint(HS_SECRET, "HS256", exp=1_000), "expired"),
        (mint(HS_SECRET, "HS256", aud="https://other.example.com"), "wrong_audience"),
        (mint("another-secret-another-secret-another", "HS256"), "bad_signature"),
        ("not-a-known-api-key", "invalid_token"),
    ],
)
async def test_a_bad_credential_gets_401_invalid_token(client: httpx.AsyncClient, token: str, reason: str) -> None:
    response = await client.post("/mcp", headers={"authorization": f"Bearer {token}"}, json={})
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith(f'Bearer resource_metadata="{METADATA}"')
    assert 'error="invalid_token"' in challenge
    assert _error(response)["data"]["details"]["reason"] == reason


async def test_a_good_credential_reaches_the_app_with_its_principal(client: httpx.AsyncClient, inner: Inner) -> None:
    token = mint(HS_SECRET, "HS256", sub="alice", scope="tools.read", azp="cli-app")
    response = await client.post("/mcp", headers={"authorization": f"Bearer {token}"}, json={})
    assert (response.status_code, response.text) == (200, "inner")
    scope = inner.scopes[0]
    principal = scope[SCOPE_KEY]
    assert principal.subject == "alice"
    assert inner.principals == [principal]
    user = scope["user"]
    assert isinstance(user, AuthenticatedUser)
    assert (user.access_token.client_id, user.access_token.subject) == ("cli-app", "alice")
    assert scope["auth"].scopes == ["tools.read"]

    response = await client.get("/mcp/", headers={"x-api-key": KEY})
    assert response.status_code == 200
    assert inner.scopes[1]["user"].access_token.client_id == "api-key:ci"
    assert current_principal.get() is None  # reset after the request


async def test_anonymous_when_not_required(inner: Inner) -> None:
    app = AuthASGI(inner, Authenticator(_config(required=False)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        assert (await client.post("/mcp", json={})).status_code == 200
        bad = await client.post("/mcp", headers={"authorization": "Bearer x.y.z"}, json={})
    assert bad.status_code == 401
    assert inner.scopes[0][SCOPE_KEY].anonymous
    assert "user" not in inner.scopes[0]


async def test_repeated_credential_headers_are_refused(client: httpx.AsyncClient) -> None:
    token = mint(HS_SECRET, "HS256")
    headers = [("authorization", f"Bearer {token}"), ("authorization", f"Bearer {token}")]
    response = await client.post("/mcp", headers=headers, json={})
    assert response.status_code == 401
    assert _error(response)["data"]["details"]["reason"] == "invalid_token"


async def test_other_paths_and_preflight_pass_through(client: httpx.AsyncClient, inner: Inner) -> None:
    assert (await client.get("/health")).status_code == 200
    assert (await client.options("/mcp")).status_code == 200
    assert (await client.post("/mcpx", json={})).status_code == 200
    assert len(inner.scopes) == 3


@pytest.mark.parametrize("path", ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"])
async def test_protected_resource_metadata(client: httpx.AsyncClient, inner: Inner, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.json() == {
        "resource": AUDIENCE,
        "authorization_servers": [ISSUER],
        "scopes_supported": ["tools.read", "tools.write"],
        "bearer_methods_supported": ["header"],
    }
    head = await client.head(path)
    assert (head.status_code, head.content) == (200, b"")
    assert (await client.post(path)).status_code == 405
    assert inner.scopes == []


async def test_metadata_is_derived_from_the_request_when_no_resource_is_configured(inner: Inner) -> None:
    config = _config(resource=None, authorization_servers=[], scopes_supported=[], jwt=None)
    app = AuthASGI(inner, Authenticator(config), mcp_path="/api/mcp/")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost:9000") as client:
        metadata = await client.get("/.well-known/oauth-protected-resource/api/mcp")
        refused = await client.post("/api/mcp", json={})
    assert metadata.json() == {"resource": "http://localhost:9000/api/mcp", "bearer_methods_supported": ["header"]}
    assert refused.headers["www-authenticate"] == (
        'Bearer resource_metadata="http://localhost:9000/.well-known/oauth-protected-resource/api/mcp"'
    )


def test_metadata_url_follows_rfc_9728() -> None:
    assert metadata_url("https://mcp.example.com/mcp") == METADATA
    assert metadata_url("https://mcp.example.com/") == "https://mcp.example.com/.well-known/oauth-protected-resource"
    assert metadata_url("https://h:8443/a/b/") == "https://h:8443/.well-known/oauth-protected-resource/a/b"


async def test_an_unreachable_jwks_answers_503(inner: Inner, rsa_key: Any) -> None:
    server = JWKSServer()
    server.httpd.server_close()  # nothing listens there
    config = _config(jwt=JWTConfig(issuer=ISSUER, jwks_url=server.url, jwks_timeout=2))
    app = AuthASGI(inner, Authenticator(config))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        with anyio.fail_after(10):
            response = await client.post("/mcp", headers={"authorization": f"Bearer {mint(rsa_key, 'RS256', 'k')}"})
    assert response.status_code == 503
    assert _error(response)["data"]["code"] == "dependency_unavailable"
    assert "www-authenticate" not in response.headers


async def _websocket(app: AuthASGI, headers: list[tuple[bytes, bytes]]) -> list[Message]:
    incoming: list[Message] = [{"type": "websocket.connect"}]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/mcp", "headers": headers, "subprotocols": ["mcp"]}
    with anyio.fail_after(5):
        await app(scope, receive, send)
    return sent


async def test_a_websocket_handshake_without_credential_is_closed_with_1008(inner: Inner) -> None:
    app = AuthASGI(inner, Authenticator(_config()))
    sent = await _websocket(app, [(b"authorization", b"Bearer x.y.z")])
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "unauthenticated"}]
    assert await _websocket(app, []) == sent
    assert inner.scopes == []


async def test_a_websocket_handshake_with_a_credential_is_passed_on(inner: Inner) -> None:
    app = AuthASGI(inner, Authenticator(_config()))
    token = mint(HS_SECRET, "HS256", sub="bob")
    sent = await _websocket(app, [(b"authorization", f"Bearer {token}".encode())])
    assert sent[0] == {"type": "websocket.accept"}
    assert inner.scopes[0][SCOPE_KEY].subject == "bob"
    assert inner.principals[0] is not None
    assert inner.principals[0].subject == "bob"


async def test_lifespan_passes_through(inner: Inner, clock: FakeClock) -> None:
    app = AuthASGI(inner, Authenticator(_config(), clock=clock))
    await app({"type": "lifespan"}, _never, _never)
    assert inner.scopes == [{"type": "lifespan"}]


async def _never(*_: Any) -> Any:
    raise AssertionError("not expected")


async def test_a_remembered_bearer_value_skips_the_header_parse_but_not_the_clock(
    inner: Inner, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The HTTP tier decides a lone ``Authorization`` header by its bytes: the same principal
    object every time, no header mapping built, and still refused once the token expires."""
    authenticator = Authenticator(_config(), clock=clock)
    general: list[object] = []
    real = Authenticator.authenticate

    async def counting(self: Authenticator, *args: Any, **kwargs: Any) -> Any:
        general.append(args)
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(Authenticator, "authenticate", counting)
    app = AuthASGI(inner, authenticator)
    token = mint(HS_SECRET, "HS256", sub="alice", exp=int(clock.now) + 60)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        for _ in range(3):
            response = await client.post("/mcp", headers={"authorization": f"Bearer {token}"}, json={})
            assert response.status_code == 200
        assert general == []
        first = inner.scopes[0][SCOPE_KEY]
        assert all(scope[SCOPE_KEY] is first for scope in inner.scopes)
        clock.now += 60 + 30  # past exp and the leeway
        expired = await client.post("/mcp", headers={"authorization": f"Bearer {token}"}, json={})
        assert expired.status_code == 401
        assert _error(expired)["data"]["details"]["reason"] == "expired"
        # Other credentials still take the general way.
        assert (await client.get("/mcp/", headers={"x-api-key": KEY})).status_code == 200
        both = await client.post("/mcp", headers={"authorization": f"Bearer {token}", "x-api-key": KEY}, json={})
        assert _error(both)["data"]["details"]["reason"] == "invalid_token"
    assert len(general) == 2


async def test_an_api_key_header_named_authorization_keeps_the_general_way(inner: Inner) -> None:
    app = AuthASGI(inner, Authenticator(_config(api_key_header="Authorization")))
    token = mint(HS_SECRET, "HS256")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        for _ in range(2):
            response = await client.post("/mcp", headers={"authorization": f"Bearer {token}"}, json={})
            assert response.status_code == 401  # the same header is a token and a key at once
            assert _error(response)["data"]["details"]["reason"] == "invalid_token"

"""Login delegated to an OpenID Connect provider, against a real one (oidc-provider on loopback):
begin, the user's login and consent at the provider, complete; and every way it must fail."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio
import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcplane.oauth.login import LoginFailed, LoginIdentity, UpstreamLogin, UpstreamLoginConfig, build_login
from tests.oauth.conftest import IdP, Rewriting
from tests.serving import serving

REDIRECT_URI = "http://127.0.0.1:9/oauth/callback"
"""Where the provider sends the browser back: never reached, ``idp.login`` stops there."""


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


@pytest.fixture(scope="module")
def client(idp: IdP) -> tuple[str, str]:
    client_id, client_secret = idp.register_client([REDIRECT_URI])
    assert client_secret is not None
    return client_id, client_secret


def config_for(idp: IdP, client: tuple[str, str], **extra: Any) -> UpstreamLoginConfig:
    return UpstreamLoginConfig.model_validate(
        {"issuer": idp.issuer, "client_id": client[0], "client_secret": client[1], **extra}
    )


@pytest.fixture
async def login(idp: IdP, client: tuple[str, str]) -> AsyncGenerator[UpstreamLogin]:
    upstream = build_login(config_for(idp, client, claims={"tenant": "tenant"}))
    yield upstream
    await upstream.aclose()


async def log_in(idp: IdP, upstream: UpstreamLogin, *, user: str = "alice") -> tuple[dict[str, str], dict[str, str]]:
    """(the redirect's query, what begin saved) after ``user`` logged in at the provider."""
    state = secrets.token_urlsafe(16)
    start = await upstream.begin(state=state, redirect_uri=REDIRECT_URI)
    callback = await idp.login(start.url, user=user)
    assert callback.startswith(REDIRECT_URI)
    return query_of(callback), dict(start.saved)


async def complete(idp: IdP, upstream: UpstreamLogin, *, user: str = "alice") -> LoginIdentity:
    query, saved = await log_in(idp, upstream, user=user)
    return await upstream.complete(query=query, saved=saved, redirect_uri=REDIRECT_URI)


async def test_a_login_gives_the_verified_mapped_identity(idp: IdP, login: UpstreamLogin) -> None:
    identity = await complete(idp, login)
    assert identity.subject == "alice"
    assert identity.roles == ("admin",)
    assert identity.tenant == "acme"
    assert identity.claims["email"] == "alice@example.com"
    assert identity.claims["iss"] == idp.issuer
    bob = await complete(idp, login, user="bob")
    assert (bob.subject, bob.roles) == ("bob", ())


async def test_the_authorization_request_carries_pkce_s256_nonce_and_state(login: UpstreamLogin) -> None:
    start = await login.begin(state="the-state", redirect_uri=REDIRECT_URI)
    params = query_of(start.url)
    assert params["state"] == "the-state"
    assert params["code_challenge_method"] == "S256"
    assert params["nonce"] == start.saved["nonce"]
    assert params["code_challenge"] != start.saved["code_verifier"]
    assert params["response_type"] == "code"
    assert params["scope"] == "openid email profile"


async def test_claims_mapping_prefix_role_map_scopes_and_groups(idp: IdP, client: tuple[str, str]) -> None:
    config = config_for(
        idp,
        client,
        subject_prefix="corp:",
        claims={"roles": "org.roles", "scopes": "groups", "tenant": "tenant"},
        role_map={"engineering": ["deployer"], "reader": ["viewer"]},
        allowed_groups=["oncall"],
    )
    upstream = build_login(config)
    try:
        identity = await complete(idp, upstream)
    finally:
        await upstream.aclose()
    assert identity.subject == "corp:alice"
    assert identity.roles == ("reader", "writer", "viewer", "deployer")  # a space-separated string, then mapped
    assert identity.scopes == ("engineering", "oncall")


@pytest.mark.parametrize("method", ["client_secret_post", "none"])
async def test_each_token_endpoint_authentication(idp: IdP, method: str) -> None:
    client_id, client_secret = idp.register_client([REDIRECT_URI], auth_method=method)
    config = UpstreamLoginConfig.model_validate(
        {"issuer": idp.issuer, "client_id": client_id, "client_secret": client_secret, "token_auth_method": method}
    )
    upstream = build_login(config)
    try:
        assert (await complete(idp, upstream)).subject == "alice"
    finally:
        await upstream.aclose()


async def failure(upstream: UpstreamLogin, query: dict[str, str], saved: dict[str, str]) -> LoginFailed:
    with pytest.raises(LoginFailed) as caught:
        await upstream.complete(query=query, saved=saved, redirect_uri=REDIRECT_URI)
    assert caught.value.code == "unauthenticated"
    assert caught.value.details == {"reason": caught.value.reason}
    return caught.value


async def test_a_wrong_state_fails(idp: IdP, login: UpstreamLogin) -> None:
    query, saved = await log_in(idp, login)
    error = await failure(login, {**query, "state": "forged"}, saved)
    assert error.reason == "state_mismatch"


async def test_a_wrong_nonce_fails(idp: IdP, login: UpstreamLogin) -> None:
    query, saved = await log_in(idp, login)
    error = await failure(login, query, {**saved, "nonce": "another-login"})
    assert error.reason == "nonce_mismatch"


async def test_a_wrong_iss_on_the_redirect_fails(idp: IdP, login: UpstreamLogin) -> None:
    query, saved = await log_in(idp, login)
    assert query["iss"] == idp.issuer  # the provider advertises RFC 9207, so iss is required
    assert (await failure(login, {**query, "iss": "https://evil.example"}, saved)).reason == "issuer_mismatch"
    without = {key: value for key, value in query.items() if key != "iss"}
    assert (await failure(login, without, saved)).reason == "issuer_mismatch"


async def test_a_provider_error_response_fails(idp: IdP, login: UpstreamLogin) -> None:
    start = await login.begin(state="s-deny", redirect_uri=REDIRECT_URI)
    callback = await idp.login(start.url, deny=True)
    error = await failure(login, query_of(callback), dict(start.saved))
    assert error.reason == "provider_error"
    assert "access_denied" in error.message


async def test_a_code_used_twice_fails(idp: IdP, login: UpstreamLogin) -> None:
    query, saved = await log_in(idp, login)
    await login.complete(query=query, saved=saved, redirect_uri=REDIRECT_URI)
    error = await failure(login, query, saved)
    assert error.reason == "token_refused"
    assert "invalid_grant" in error.message


async def with_forged_id_token(
    idp: IdP, client: tuple[str, str], forge: Callable[[str], str], *, clock: Callable[[], float] = time.time
) -> LoginFailed:
    """Log in through a man in the middle that replaces the token response's ID token."""
    transport = Rewriting("/token", lambda body: {**body, "id_token": forge(body["id_token"])})
    async with httpx.AsyncClient(transport=transport) as http:
        upstream = build_login(config_for(idp, client), http=http, clock=clock)
        query, saved = await log_in(idp, upstream)
        return await failure(upstream, query, saved)


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


async def test_a_tampered_id_token_fails(idp: IdP, client: tuple[str, str]) -> None:
    def tamper(token: str) -> str:
        header, _payload, signature = token.split(".")
        claims = {**claims_of(token), "roles": ["superuser"]}
        forged = jwt.encode(claims, "x" * 32, algorithm="HS256").split(".")[1]
        return f"{header}.{forged}.{signature}"

    error = await with_forged_id_token(idp, client, tamper)
    assert error.reason == "invalid_id_token"
    assert "bad_signature" in error.message


async def test_an_expired_id_token_fails(idp: IdP, client: tuple[str, str]) -> None:
    error = await with_forged_id_token(idp, client, lambda token: token, clock=lambda: time.time() + 3600)
    assert error.reason == "invalid_id_token"
    assert "expired" in error.message


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"iss": "https://another-issuer.example"}, "wrong_issuer"),
        ({"aud": "another-client"}, "wrong_audience"),
        ({"exp": 1_000_000}, "expired"),
    ],
)
async def test_a_well_signed_id_token_with_a_wrong_claim_fails(
    idp: IdP, client: tuple[str, str], change: dict[str, Any], why: str
) -> None:
    error = await with_forged_id_token(idp, client, lambda token: idp.sign({**claims_of(token), **change}))
    assert error.reason == "invalid_id_token"
    assert why in error.message


async def test_an_id_token_for_another_authorized_party_fails(idp: IdP, client: tuple[str, str]) -> None:
    def other_azp(token: str) -> str:
        return idp.sign({**claims_of(token), "aud": [client[0], "another"], "azp": "another"})

    error = await with_forged_id_token(idp, client, other_azp)
    assert (error.reason, "azp" in error.message) == ("invalid_id_token", True)


async def test_a_wrong_at_hash_fails(idp: IdP, client: tuple[str, str]) -> None:
    error = await with_forged_id_token(idp, client, lambda token: idp.sign({**claims_of(token), "at_hash": "AAAA"}))
    assert (error.reason, "at_hash" in error.message) == ("invalid_id_token", True)


async def test_allowed_domains_need_a_verified_email_in_the_domain(idp: IdP, client: tuple[str, str]) -> None:
    upstream = build_login(config_for(idp, client, allowed_domains=["Example.com"]))
    try:
        assert (await complete(idp, upstream)).subject == "alice"
        for user in ("bob", "mallory"):  # another domain; the right domain, unverified
            query, saved = await log_in(idp, upstream, user=user)
            assert (await failure(upstream, query, saved)).reason == "not_allowed"
    finally:
        await upstream.aclose()


async def test_allowed_groups_refuse_a_user_in_none(idp: IdP, client: tuple[str, str]) -> None:
    upstream = build_login(config_for(idp, client, allowed_groups=["engineering"]))
    try:
        query, saved = await log_in(idp, upstream, user="bob")
        assert (await failure(upstream, query, saved)).reason == "not_allowed"
    finally:
        await upstream.aclose()


async def test_an_unreachable_provider_fails() -> None:
    with socket_closed() as port:
        upstream = build_login(UpstreamLoginConfig(issuer=f"http://127.0.0.1:{port}", client_id="c"))  # pyright: ignore[reportArgumentType]
        with pytest.raises(LoginFailed) as caught:
            await upstream.begin(state="s", redirect_uri=REDIRECT_URI)
        await upstream.aclose()
    assert caught.value.reason == "provider_unavailable"
    assert "unreachable" in caught.value.message


class socket_closed:
    """A loopback port that nothing listens on, for the block."""

    def __enter__(self) -> int:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        return self._sock.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        self._sock.close()


@pytest.mark.parametrize("kind", ["oversized", "slow", "not_json", "other_issuer", "http_error"])
async def test_a_bad_discovery_document_fails(kind: str) -> None:
    release = anyio.Event()
    base: list[str] = []

    async def discovery(request: Request) -> Response:
        if kind == "oversized":
            return JSONResponse({"issuer": base[0], "padding": "x" * (2 * 1024 * 1024)})
        if kind == "slow":
            await release.wait()
        if kind == "not_json":
            return Response("<html>", media_type="text/html")
        if kind == "http_error":
            return Response("down", status_code=503)
        return JSONResponse({"issuer": "https://elsewhere.example", "authorization_endpoint": "https://x/a"})

    app = Starlette(routes=[Route("/.well-known/openid-configuration", discovery)])
    async with serving(app, force_exit=True) as url:
        base.append(url)
        config = UpstreamLoginConfig.model_validate({"issuer": url, "client_id": "c", "timeout": 0.5})
        upstream = build_login(config)
        try:
            with pytest.raises(LoginFailed) as caught:
                await upstream.begin(state="s", redirect_uri=REDIRECT_URI)
        finally:
            release.set()
            await upstream.aclose()
    assert caught.value.reason == "provider_unavailable"


async def test_no_secret_code_or_token_reaches_the_log(
    idp: IdP, client: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    transport = Rewriting("/token", lambda body: body)
    async with httpx.AsyncClient(transport=transport) as http:
        upstream = build_login(config_for(idp, client), http=http)
        query, saved = await log_in(idp, upstream)
        caplog.clear()  # what the browser (the test's HTTP client) logged is not mcplane's
        await upstream.complete(query=query, saved=saved, redirect_uri=REDIRECT_URI)
        with pytest.raises(LoginFailed):  # the code again: a refusal is logged too
            await upstream.complete(query=query, saved=saved, redirect_uri=REDIRECT_URI)
    assert "login at the identity provider completed" in caplog.text  # the log is captured
    secrets_seen = [client[1], query["code"], saved["code_verifier"], saved["nonce"]]
    for body in transport.seen:
        secrets_seen += [value for key, value in body.items() if key in ("id_token", "access_token", "refresh_token")]
    for value in secrets_seen:
        assert value not in caplog.text


async def test_discovery_is_read_once_then_again_after_its_max_age(idp: IdP, client: tuple[str, str]) -> None:
    from mcplane.oauth.login_oidc import OIDCLogin

    now = [0.0]
    transport = Rewriting("/.well-known/openid-configuration", lambda body: body)
    async with httpx.AsyncClient(transport=transport) as http:
        upstream = OIDCLogin(config_for(idp, client, discovery_max_age=600), http=http, monotonic=lambda: now[0])
        await complete(idp, upstream)
        await complete(idp, upstream)
        assert len(transport.seen) == 1
        now[0] += 601
        assert (await complete(idp, upstream)).subject == "alice"
        assert len(transport.seen) == 2


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"roles": {"admin": True}}, "invalid_claims"),  # neither a list nor a string
        ({"roles": ["admin\u202e"]}, "invalid_claims"),  # a bidi override
        ({"roles": [f"r{i}" for i in range(300)]}, "invalid_claims"),  # too many
        ({"sub": ""}, "invalid_claims"),
        ({"sub": None}, "invalid_claims"),
        ({"nonce": None}, "nonce_mismatch"),
    ],
)
async def test_hostile_claims_fail_cleanly(
    idp: IdP, client: tuple[str, str], change: dict[str, Any], reason: str
) -> None:
    def forge(token: str) -> str:
        claims = {key: value for key, value in {**claims_of(token), **change}.items() if value is not None}
        return idp.sign(claims)

    assert (await with_forged_id_token(idp, client, forge)).reason == reason


async def test_an_oversized_redirect_fails(idp: IdP, login: UpstreamLogin) -> None:
    query, saved = await log_in(idp, login)
    assert (await failure(login, {**query, "code": "x" * 100_000}, saved)).reason == "invalid_response"
    many = {**query, **{f"k{i}": "v" for i in range(100)}}
    assert (await failure(login, many, saved)).reason == "invalid_response"

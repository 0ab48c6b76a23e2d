"""``identity: exchange`` end to end: a real gateway in front of a real mcplane upstream that accepts
only tokens meant for it (JWTs from the test identity provider with its own audience); the caller
authenticates at the gateway with a token the provider issued for the gateway, and the gateway
exchanges it (RFC 8693) at the provider for each upstream call, cached."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import AsyncGenerator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import anyio
import httpx
import httpx2
import jwt
import pytest
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcplane.auth.api_keys import hash_api_key
from mcplane.context import Context, Principal
from mcplane.errors import DependencyUnavailable, Unauthenticated
from mcplane.gateway import Gateway, parse_gateway_config
from mcplane.gateway.token_exchange import TOKEN_EXCHANGE_GRANT, TokenExchange
from tests.conftest import ServerProcess, start_server
from tests.gateway.conftest import error_code
from tests.oauth.conftest import IdP, running_idp
from tests.serving import serving

APP = Path(__file__).with_name("exchange_app.py")
GATEWAY = "https://gateway.test/mcp"
UPSTREAM = "https://upstream.test/mcp"
STATIC_SECRET = "a-static-gateway-key-of-at-least-32-bytes!"
API_KEY = "mcp_test_api_key_for_the_exchange_tests"


@pytest.fixture(scope="module")
def idp() -> Iterator[IdP]:
    with running_idp() as provider:
        yield provider


@pytest.fixture(scope="module")
def exchange_client(idp: IdP) -> tuple[str, str]:
    client_id, secret = idp.register_client([], grant_types=[TOKEN_EXCHANGE_GRANT])
    assert secret is not None
    return client_id, secret


@pytest.fixture(scope="module")
def upstream(idp: IdP, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("exchange-upstream")
    jwt_config = {"issuer": idp.issuer, "audience": UPSTREAM, "jwks_url": f"{idp.issuer}/jwks"}
    config = {"auth": {"required": False, "resource": UPSTREAM, "jwt": jwt_config}}
    path = tmp / "mcplane.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    server = start_server(APP, tmp_path=tmp, extra_args=("--config", str(path)))
    yield server
    server.stop()


def gateway_config(idp: IdP, upstreams: dict[str, Any]) -> dict[str, Any]:
    jwt_config = {
        "issuer": idp.issuer,
        "audience": GATEWAY,
        "jwks_url": f"{idp.issuer}/jwks",
        "keys": [{"kid": "static", "secret": STATIC_SECRET}],
    }
    api_keys = [{"id": "ci", "hash": hash_api_key(API_KEY), "subject": "ci-bot"}]
    return {"auth": {"resource": GATEWAY, "jwt": jwt_config, "api_keys": api_keys}, "upstreams": upstreams}


def exchange_identity(client: tuple[str, str], token_url: str) -> dict[str, Any]:
    return {
        "mode": "exchange",
        "token_url": token_url,
        "client_id": client[0],
        "client_secret": client[1],
        "audience": UPSTREAM,
    }


@asynccontextmanager
async def gateway(config: dict[str, Any]) -> AsyncGenerator[str]:
    """A real gateway served by uvicorn on loopback; yields its /mcp URL."""
    plane = Gateway.from_config(config)
    async with serving(plane.http_app(), lifespan="on") as base:
        yield f"{base}/mcp"


async def call(url: str, token: str, tool: str, *, mode: str = "auto") -> Any:
    async with (
        httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,  # pyright: ignore[reportArgumentType]
    ):
        return await client.call_tool(tool, {})


@pytest.mark.parametrize("caller_mode", ["auto", "legacy"])
async def test_each_caller_reaches_the_upstream_with_its_own_exchanged_token(
    idp: IdP,
    upstream: ServerProcess,
    exchange_client: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
    caller_mode: str,
) -> None:
    """2026-07-28 callers on the default upstream link; 2025-11-25 callers too, over an upstream
    pinned to 2026-07-28 (an upstream session is bound to the credential that opened it, so per-call
    credentials need the stateless era; see docs/gateway.md)."""
    caplog.set_level(logging.DEBUG)
    identity = exchange_identity(exchange_client, f"{idp.issuer}/token")
    pinned = {"mode": "2026-07-28"} if caller_mode == "legacy" else {}
    upstreams = {
        "lean": {"endpoints": [{"url": upstream.url}], "identity": identity, **pinned},
        "sdk": {"endpoints": [{"url": upstream.url}], "identity": identity, "lean": False, **pinned},
    }
    alice = await idp.user_token(user="alice", resource=GATEWAY)
    bob = await idp.user_token(user="bob", resource=GATEWAY)
    assert jwt.decode(alice, options={"verify_signature": False})["aud"] == GATEWAY
    before = idp.exchanges()
    with anyio.fail_after(60):
        async with gateway(gateway_config(idp, upstreams)) as url:
            seen = {
                (who, tool): await call(url, token, tool, mode=caller_mode)
                for who, token in (("alice", alice), ("bob", bob))
                for tool in ("lean__whoami", "sdk__whoami")
            }
            again = await call(url, alice, "lean__whoami", mode=caller_mode)  # cached: no new exchange
    for (who, _), result in seen.items():
        assert not result.is_error, result
        body = result.structured_content
        assert body["subject"] == who
        assert body["aud"] == UPSTREAM  # the upstream verified a token meant for it
        assert body["act"] == {"sub": exchange_client[0]}  # obtained by the gateway, on the caller's behalf
    assert seen["alice", "lean__whoami"].structured_content["roles"] == ["admin"]
    assert seen["bob", "sdk__whoami"].structured_content["roles"] == []
    assert again.structured_content["subject"] == "alice"
    assert idp.exchanges() - before == 4  # one per (caller, upstream); the repeated call used the cache
    exchanged = [m for m in caplog.messages if "exchange" in m]
    assert not any(token in caplog.text for token in (alice, bob)), exchanged


async def test_the_upstream_refuses_the_callers_own_token(idp: IdP, upstream: ServerProcess) -> None:
    """What ``exchange`` is for: the token meant for the gateway is no good at the upstream."""
    alice = await idp.user_token(user="alice", resource=GATEWAY)
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            upstream.url,
            headers={"authorization": f"Bearer {alice}", "accept": "application/json, text/event-stream"},
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
        )
    assert answer.status_code == 401


async def test_a_caller_without_a_token_or_with_one_the_provider_refuses(
    idp: IdP, upstream: ServerProcess, exchange_client: tuple[str, str]
) -> None:
    upstreams = {
        "up": {
            "endpoints": [{"url": upstream.url}],
            "identity": exchange_identity(exchange_client, f"{idp.issuer}/token"),
        }
    }
    now = int(time.time())
    claims = {"iss": idp.issuer, "aud": GATEWAY, "sub": "alice", "iat": now, "exp": now + 300}
    static = jwt.encode(claims, STATIC_SECRET, algorithm="HS256", headers={"kid": "static"})
    with anyio.fail_after(60):
        async with gateway(gateway_config(idp, upstreams)) as url:
            by_key = await call(url, API_KEY, "up__whoami")
            refused = await call(url, static, "up__whoami")
    assert error_code(by_key) == "unauthenticated"
    assert by_key.meta["mcplane/error"]["details"]["reason"] == "no_subject_token"
    assert error_code(refused) == "unauthenticated"
    assert refused.meta["mcplane/error"]["details"]["reason"] == "exchange_refused"


async def test_an_unreachable_token_service_is_dependency_unavailable(
    idp: IdP, upstream: ServerProcess, exchange_client: tuple[str, str]
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        token_url = f"http://127.0.0.1:{closed.getsockname()[1]}/token"
        upstreams = {
            "up": {"endpoints": [{"url": upstream.url}], "identity": exchange_identity(exchange_client, token_url)}
        }
        alice = await idp.user_token(user="alice", resource=GATEWAY)
        with anyio.fail_after(60):
            async with gateway(gateway_config(idp, upstreams)) as url:
                result = await call(url, alice, "up__whoami")
    assert error_code(result) == "dependency_unavailable"
    assert result.meta["mcplane/error"]["details"]["reason"] == "exchange_unavailable"


# ----------------------------------------------------------------- the cache, with an injected clock


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def caller(token: str, **claims: Any) -> Context:
    """What the exchange reads of a call: the principal and the request's headers."""
    principal = Principal(subject="alice", claims={"exp": time.time() + 3600, **claims})
    return cast(Context, SimpleNamespace(principal=principal, headers={"authorization": f"Bearer {token}"}))


def exchanger(
    idp: IdP, client: tuple[str, str], http: httpx.AsyncClient, clock: Clock, **options: Any
) -> TokenExchange:
    config = parse_gateway_config(
        {
            "upstreams": {
                "up": {
                    "endpoints": [{"url": "http://127.0.0.1:9/mcp"}],
                    "identity": exchange_identity(client, f"{idp.issuer}/token"),
                }
            }
        }
    )
    return TokenExchange("up", config.upstreams["up"].identity, http=http, monotonic=clock, **options)


async def test_the_cache_keeps_a_token_until_shortly_before_it_expires(
    idp: IdP, exchange_client: tuple[str, str]
) -> None:
    alice = await idp.user_token(user="alice", resource=GATEWAY)
    clock = Clock()
    async with httpx.AsyncClient() as http:
        exchange = exchanger(idp, exchange_client, http, clock)
        first = await exchange.headers(caller(alice))
        clock.now += 269  # the provider says 300 s; kept until 30 s before
        assert await exchange.headers(caller(alice)) == first
        assert exchange.exchanges == 1
        clock.now += 2
        renewed = await exchange.headers(caller(alice))
        assert exchange.exchanges == 2
    token = renewed["Authorization"].removeprefix("Bearer ")
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == UPSTREAM


async def test_the_cache_never_outlives_the_callers_token_and_is_bounded(
    idp: IdP, exchange_client: tuple[str, str]
) -> None:
    tokens = [await idp.user_token(user=user, resource=GATEWAY) for user in ("alice", "bob", "alice")]
    clock = Clock()
    async with httpx.AsyncClient() as http:
        exchange = exchanger(idp, exchange_client, http, clock, max_cached=2)
        await exchange.headers(caller(tokens[0], exp=time.time() - 1))  # the caller's token is past its exp
        await exchange.headers(caller(tokens[0], exp=time.time() - 1))
        assert exchange.exchanges == 2  # nothing was kept
        for token in tokens:
            await exchange.headers(caller(token))
        assert exchange.exchanges == 5
        await exchange.headers(caller(tokens[0]))  # dropped when the third came in
        assert exchange.exchanges == 6
        await exchange.headers(caller(tokens[2]))  # still kept
        assert exchange.exchanges == 6


async def test_concurrent_calls_share_one_exchange(idp: IdP, exchange_client: tuple[str, str]) -> None:
    alice = await idp.user_token(user="alice", resource=GATEWAY)
    seen: list[dict[str, str]] = []
    async with httpx.AsyncClient() as http:
        exchange = exchanger(idp, exchange_client, http, Clock())

        async def one() -> None:
            seen.append(await exchange.headers(caller(alice)))

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(one)
    assert exchange.exchanges == 1
    assert len({headers["Authorization"] for headers in seen}) == 1


async def test_anonymous_and_api_key_callers_have_nothing_to_exchange(
    idp: IdP, exchange_client: tuple[str, str]
) -> None:
    async with httpx.AsyncClient() as http:
        exchange = exchanger(idp, exchange_client, http, Clock())
        anonymous = cast(Context, SimpleNamespace(principal=Principal(subject="anonymous"), headers={}))
        by_key = cast(
            Context,
            SimpleNamespace(
                principal=Principal(subject="ci-bot", claims={"auth_method": "api_key"}),
                headers={"authorization": f"Bearer {API_KEY}"},
            ),
        )
        for ctx in (anonymous, by_key):
            with pytest.raises(Unauthenticated) as caught:
                await exchange.headers(ctx)
            assert caught.value.details == {"reason": "no_subject_token"}
    assert exchange.exchanges == 0


async def test_a_misconfigured_gateway_client_is_dependency_unavailable(
    idp: IdP, exchange_client: tuple[str, str]
) -> None:
    alice = await idp.user_token(user="alice", resource=GATEWAY)
    async with httpx.AsyncClient() as http:
        exchange = exchanger(idp, (exchange_client[0], "not-the-secret"), http, Clock())
        with pytest.raises(DependencyUnavailable) as caught:
            await exchange.headers(caller(alice))
    assert caught.value.details == {"reason": "exchange_unavailable"}


@pytest.mark.parametrize(
    ("identity", "message"),
    [
        ({"mode": "exchange", "audience": UPSTREAM}, "needs token_url"),
        ({"mode": "exchange", "token_url": "https://login.example.com/token"}, "needs audience"),
        ({"mode": "exchange", "token_url": "http://login.example.com/token", "audience": UPSTREAM}, "https"),
        ({"mode": "forward", "token_url": "https://login.example.com/token"}, "only with identity mode exchange"),
    ],
)
def test_an_unusable_exchange_configuration_is_refused(identity: dict[str, Any], message: str) -> None:
    from mcplane.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        parse_gateway_config(
            {"upstreams": {"up": {"endpoints": [{"url": "https://up.example/mcp"}], "identity": identity}}}
        )
    assert message in str(caught.value)


def test_exchange_needs_an_http_endpoint_and_no_authorization_header() -> None:
    from mcplane.errors import ConfigError

    identity = {"mode": "exchange", "token_url": "https://login.example.com/token", "audience": UPSTREAM}
    with pytest.raises(ConfigError, match="http"):
        parse_gateway_config(
            {"upstreams": {"up": {"endpoints": [{"url": "wss://up.example/mcp"}], "identity": identity}}}
        )
    with pytest.raises(ConfigError, match="exclude each other"):
        parse_gateway_config(
            {
                "upstreams": {
                    "up": {
                        "endpoints": [{"url": "https://up.example/mcp"}],
                        "identity": identity,
                        "headers": {"Authorization": "Bearer gateway"},
                    }
                }
            }
        )


async def test_no_token_or_secret_reaches_the_log(
    idp: IdP, exchange_client: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    alice = await idp.user_token(user="alice", resource=GATEWAY)
    now = int(time.time())
    foreign = jwt.encode({"sub": "alice", "exp": now + 300}, STATIC_SECRET, algorithm="HS256")
    caplog.set_level(logging.DEBUG)
    async with httpx.AsyncClient() as http:
        exchanged = await exchanger(idp, exchange_client, http, Clock()).headers(caller(alice))
        with pytest.raises(Unauthenticated):  # refused: logged with its OAuth error code
            await exchanger(idp, exchange_client, http, Clock()).headers(caller(foreign))
        with pytest.raises(DependencyUnavailable):  # the gateway's own client refused: logged as a warning
            await exchanger(idp, (exchange_client[0], "wrong-secret"), http, Clock()).headers(caller(alice))
    assert "token exchange" in caplog.text  # the failures were logged
    for value in (alice, foreign, exchanged["Authorization"].removeprefix("Bearer "), exchange_client[1]):
        assert value not in caplog.text


@pytest.mark.parametrize("token", ["a\r\nX-Injected: 1", "caf\u00e9", "x" * 10 + "\x00"])
async def test_a_token_service_answering_a_token_no_header_can_carry_is_dependency_unavailable(
    idp: IdP, upstream: ServerProcess, token: str
) -> None:
    """A token service (misconfigured, or not the one meant) answering an access token with a
    line break, a non-ASCII character or a control character: it never reaches a header."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    body = json.dumps({"access_token": token, "token_type": "Bearer", "expires_in": 60}).encode()

    class Service(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    service = ThreadingHTTPServer(("127.0.0.1", 0), Service)
    threading.Thread(target=service.serve_forever, daemon=True).start()
    try:
        token_url = f"http://127.0.0.1:{service.server_address[1]}/token"
        upstreams = {
            "up": {"endpoints": [{"url": upstream.url}], "identity": exchange_identity(("gw", "s" * 32), token_url)}
        }
        alice = await idp.user_token(user="alice", resource=GATEWAY)
        with anyio.fail_after(60):
            async with gateway(gateway_config(idp, upstreams)) as url:
                result = await call(url, alice, "up__whoami")
    finally:
        service.shutdown()
        service.server_close()
    assert error_code(result) == "dependency_unavailable", result
    assert result.meta is not None
    assert result.meta["mcplane/error"]["details"]["reason"] == "exchange_unavailable"

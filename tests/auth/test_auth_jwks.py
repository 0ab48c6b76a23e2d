"""JWKS over real HTTP: rotation, single-flight refresh, refresh pacing, outages."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import anyio
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mcplane.auth import AuthConfig, AuthenticationFailed, Authenticator, JWTConfig
from mcplane.errors import DependencyUnavailable
from tests.auth.auth_support import AUDIENCE, HS_SECRET, ISSUER, NOW, FakeClock, JWKSServer, jwk, mint, public_pem


def _auth(server: JWKSServer, clock: FakeClock, monotonic: FakeClock, **options: Any) -> Authenticator:
    config = JWTConfig(issuer=ISSUER, audience=AUDIENCE, jwks_url=server.url, **options)
    return Authenticator(AuthConfig(jwt=config), clock=clock, monotonic=monotonic)


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def _reason(auth: Authenticator, token: str) -> str:
    with pytest.raises(AuthenticationFailed) as caught:
        await auth.authenticate(_bearer(token))
    return caught.value.reason


async def test_keys_come_from_the_jwks_url(
    jwks_server: JWKSServer,
    clock: FakeClock,
    monotonic: FakeClock,
    rsa_key: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
) -> None:
    jwks_server.serve(jwk(rsa_key, "r1"), jwk(ec_key, "e1"))
    auth = _auth(jwks_server, clock, monotonic)
    with anyio.fail_after(10):
        assert (await auth.authenticate(_bearer(mint(rsa_key, "RS256", "r1")))).subject == "alice"
        assert (await auth.authenticate(_bearer(mint(ec_key, "ES256", "e1")))).subject == "alice"
        assert (await auth.authenticate(_bearer(mint(ec_key, "ES256")))).subject == "alice"  # no kid
    assert jwks_server.fetches == 1


async def test_a_rotated_key_is_fetched_once_on_its_first_token(
    jwks_server: JWKSServer,
    clock: FakeClock,
    monotonic: FakeClock,
    rsa_key: rsa.RSAPrivateKey,
    rsa_key2: rsa.RSAPrivateKey,
) -> None:
    jwks_server.serve(jwk(rsa_key, "old"))
    auth = _auth(jwks_server, clock, monotonic)
    with anyio.fail_after(10):
        await auth.authenticate(_bearer(mint(rsa_key, "RS256", "old")))
        jwks_server.serve(jwk(rsa_key2, "new"))  # the issuer rotates
        monotonic.now += 11  # past the minimum refresh interval
        assert (await auth.authenticate(_bearer(mint(rsa_key2, "RS256", "new")))).subject == "alice"
        assert jwks_server.fetches == 2
        # The old key is gone from the set now; the cache followed.
        monotonic.now += 11
        assert await _reason(auth, mint(rsa_key, "RS256", "old")) == "unknown_key"
    assert jwks_server.fetches == 3


async def test_fifty_concurrent_requests_with_an_unknown_kid_share_one_fetch(
    jwks_server: JWKSServer,
    clock: FakeClock,
    monotonic: FakeClock,
    rsa_key: rsa.RSAPrivateKey,
    rsa_key2: rsa.RSAPrivateKey,
) -> None:
    jwks_server.serve(jwk(rsa_key, "old"))
    auth = _auth(jwks_server, clock, monotonic)
    token = mint(rsa_key2, "RS256", "new")
    subjects: list[str] = []

    async def one() -> None:
        subjects.append((await auth.authenticate(_bearer(token))).subject)

    with anyio.fail_after(10):
        await auth.authenticate(_bearer(mint(rsa_key, "RS256", "old")))
        monotonic.now += 60
        jwks_server.serve(jwk(rsa_key, "old"), jwk(rsa_key2, "new"))
        jwks_server.arrived.clear()
        jwks_server.gate.clear()  # hold the fetch in flight until every request is waiting
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(one)
            await anyio.to_thread.run_sync(jwks_server.arrived.wait)
            await anyio.wait_all_tasks_blocked()
            jwks_server.gate.set()
    assert subjects == ["alice"] * 50
    assert jwks_server.fetches == 2  # the first load, then exactly one refresh


async def test_a_flood_of_bogus_kids_cannot_hammer_the_jwks_endpoint(
    jwks_server: JWKSServer, clock: FakeClock, monotonic: FakeClock, rsa_key: rsa.RSAPrivateKey
) -> None:
    jwks_server.serve(jwk(rsa_key, "r1"))
    auth = _auth(jwks_server, clock, monotonic, jwks_min_refresh_interval="30s")
    reasons: list[str] = []

    async def bogus(n: int) -> None:
        reasons.append(await _reason(auth, mint(rsa_key, "RS256", f"bogus-{n}")))

    with anyio.fail_after(10):
        await auth.authenticate(_bearer(mint(rsa_key, "RS256", "r1")))
        monotonic.now += 31
        async with anyio.create_task_group() as tg:
            for n in range(50):
                tg.start_soon(bogus, n)
        assert jwks_server.fetches == 2
        for n in range(50, 100):  # still inside the interval: no fetch at all
            await bogus(n)
        assert jwks_server.fetches == 2
        monotonic.now += 31
        await bogus(100)
    assert jwks_server.fetches == 3
    assert reasons == ["unknown_key"] * 101


async def test_the_key_set_is_refetched_after_max_age(
    jwks_server: JWKSServer, clock: FakeClock, monotonic: FakeClock, rsa_key: rsa.RSAPrivateKey
) -> None:
    jwks_server.serve(jwk(rsa_key, "r1"))
    auth = _auth(jwks_server, clock, monotonic, jwks_max_age="5m")
    token = mint(rsa_key, "RS256", "r1")
    with anyio.fail_after(10):
        await auth.authenticate(_bearer(token))
        monotonic.now += 299
        await auth.authenticate(_bearer(token))
        assert jwks_server.fetches == 1
        monotonic.now += 1
        await auth.authenticate(_bearer(token))
    assert jwks_server.fetches == 2


async def test_an_unreachable_jwks_is_dependency_unavailable_not_a_bad_token(
    jwks_server: JWKSServer, clock: FakeClock, monotonic: FakeClock, rsa_key: rsa.RSAPrivateKey
) -> None:
    jwks_server.serve(jwk(rsa_key, "r1"))
    jwks_server.status = 500
    auth = _auth(jwks_server, clock, monotonic)
    with anyio.fail_after(10), pytest.raises(DependencyUnavailable):
        await auth.authenticate(_bearer(mint(rsa_key, "RS256", "r1")))


async def test_known_keys_survive_an_outage(
    jwks_server: JWKSServer,
    clock: FakeClock,
    monotonic: FakeClock,
    rsa_key: rsa.RSAPrivateKey,
    rsa_key2: rsa.RSAPrivateKey,
) -> None:
    jwks_server.serve(jwk(rsa_key, "r1"))
    auth = _auth(jwks_server, clock, monotonic, jwks_max_age=60)
    token = mint(rsa_key, "RS256", "r1")
    with anyio.fail_after(10):
        await auth.authenticate(_bearer(token))
        jwks_server.document = "not a key set"
        monotonic.now += 61
        assert (await auth.authenticate(_bearer(token))).subject == "alice"  # stale but known
        monotonic.now += 11
        with pytest.raises(DependencyUnavailable):  # a new kid cannot be checked while it is down
            await auth.authenticate(_bearer(mint(rsa_key2, "RS256", "r2")))
    assert jwks_server.fetches == 3


async def test_an_unreachable_host_is_dependency_unavailable(
    clock: FakeClock, monotonic: FakeClock, rsa_key: rsa.RSAPrivateKey
) -> None:
    server = JWKSServer()  # bound but never serving: close it so the port refuses connections
    server.httpd.server_close()
    auth = _auth(server, clock, monotonic, jwks_timeout=2)
    with anyio.fail_after(10), pytest.raises(DependencyUnavailable):
        await auth.authenticate(_bearer(mint(rsa_key, "RS256", "r1")))


async def test_symmetric_and_foreign_keys_in_a_jwks_are_ignored(
    jwks_server: JWKSServer, clock: FakeClock, monotonic: FakeClock, rsa_key: rsa.RSAPrivateKey
) -> None:
    secret = base64.urlsafe_b64encode(HS_SECRET.encode()).rstrip(b"=").decode()
    p384 = ec.generate_private_key(ec.SECP384R1())
    jwks_server.serve(
        {"kty": "oct", "kid": "sym", "k": secret},
        jwk(p384, "p384"),
        jwk(rsa_key, "enc", use="enc"),
        jwk(rsa_key, "ps", alg="PS256"),
        {"kty": "RSA", "kid": "broken", "n": "AQAB"},
        jwk(rsa_key, "r1"),
    )
    auth = _auth(jwks_server, clock, monotonic)
    with anyio.fail_after(10):
        assert await _reason(auth, mint(HS_SECRET, "HS256", "sym")) == "unknown_key"
        for kid in ("p384", "enc", "ps", "broken"):
            assert await _reason(auth, mint(rsa_key, "RS256", kid)) == "unknown_key"
        assert (await auth.authenticate(_bearer(mint(rsa_key, "RS256", "r1")))).subject == "alice"


async def test_hs256_signed_with_a_jwks_public_key_is_refused(
    jwks_server: JWKSServer, clock: FakeClock, monotonic: FakeClock, rsa_key: rsa.RSAPrivateKey
) -> None:
    jwks_server.serve(jwk(rsa_key, "r1"))
    auth = _auth(jwks_server, clock, monotonic)
    header = _b64({"alg": "HS256", "typ": "JWT", "kid": "r1"})
    body = _b64({"sub": "root", "iss": ISSUER, "aud": AUDIENCE, "exp": int(NOW) + 300})
    signing_input = f"{header}.{body}"
    mac = hmac.new(public_pem(rsa_key).encode(), signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    with anyio.fail_after(10):
        assert await _reason(auth, forged) == "invalid_token"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

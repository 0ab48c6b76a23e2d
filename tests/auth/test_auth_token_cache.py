"""The verified-token cache: a repeated token skips the signature check, never the time checks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from mcplane.auth import AuthConfig, AuthenticationFailed, Authenticator, JWTConfig, StaticKey
from mcplane.auth import tokens as tokens_module
from mcplane.auth.tokens import JWTVerifier
from mcplane.context import Principal
from tests.auth.auth_support import AUDIENCE, HS_SECRET, ISSUER, NOW, FakeClock, JWKSServer, jwk, mint


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


Via = Callable[[Authenticator, str], Awaitable[Principal]]


async def _by_headers(auth: Authenticator, token: str) -> Principal:
    return await auth.authenticate(_bearer(token))


async def _by_header_bytes(auth: Authenticator, token: str) -> Principal:
    return await auth.authenticate_bearer_header(f"Bearer {token}".encode())


@pytest.fixture(params=[_by_headers, _by_header_bytes], ids=["headers", "header-bytes"])
def via(request: pytest.FixtureRequest) -> Via:
    """Both ways in: the request's credential headers, and the raw ``Authorization`` value (HTTP tier)."""
    return request.param


def _static(clock: FakeClock) -> Authenticator:
    key = StaticKey(kid="h1", secret=SecretStr(HS_SECRET))
    return Authenticator(AuthConfig(jwt=JWTConfig(issuer=ISSUER, audience=AUDIENCE, keys=[key])), clock=clock)


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every signature check PyJWT is asked to make."""
    seen: list[str] = []
    real = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(tokens_module.jwt, "decode", counting)
    return seen


async def test_a_repeated_token_is_verified_once(clock: FakeClock, decodes: list[str]) -> None:
    auth = _static(clock)
    token = mint(HS_SECRET, "HS256", "h1", roles=["billing"])
    first = await auth.authenticate(_bearer(token))
    second = await auth.authenticate(_bearer(token))
    assert second is first
    assert first.roles == {"billing"}
    assert decodes == [token]
    assert auth.jwt is not None
    claims = await auth.jwt.verify(token)
    claims["sub"] = "mallory"  # a caller's copy: the remembered claims do not change
    assert (await auth.authenticate(_bearer(token))).subject == "alice"


async def test_a_remembered_token_still_expires_by_the_clock(clock: FakeClock, via: Via) -> None:
    auth = _static(clock)
    token = mint(HS_SECRET, "HS256", "h1", exp=int(NOW) + 60, nbf=int(NOW) + 10)
    clock.now = NOW + 10
    assert (await via(auth, token)).subject == "alice"
    assert (await via(auth, token)).subject == "alice"
    clock.now = NOW + 60 + 30  # leeway 30 s: exactly at the edge is expired
    with pytest.raises(AuthenticationFailed) as caught:
        await via(auth, token)
    assert caught.value.reason == "expired"
    clock.now = NOW - 30  # before nbf minus leeway (a clock that stepped back)
    with pytest.raises(AuthenticationFailed) as caught:
        await via(auth, token)
    assert caught.value.reason == "not_yet_valid"


async def test_tokens_that_fail_are_never_remembered(clock: FakeClock, decodes: list[str]) -> None:
    auth = _static(clock)
    forged = mint("another-secret-another-secret-another", "HS256", "h1")
    for _ in range(2):
        with pytest.raises(AuthenticationFailed) as caught:
            await auth.authenticate(_bearer(forged))
        assert caught.value.reason == "bad_signature"
    assert decodes == [forged, forged]
    assert auth.jwt is not None
    assert not auth.jwt._verified


async def test_the_cache_is_bounded(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens_module, "VERIFIED_CACHE_SIZE", 3)
    auth = _static(clock)
    minted = [mint(HS_SECRET, "HS256", "h1", sub=f"user-{i}") for i in range(5)]
    for token in minted:
        await auth.authenticate(_bearer(token))
    assert auth.jwt is not None
    assert list(auth.jwt._verified) == minted[2:]  # the oldest went first


async def test_a_jwks_token_is_believed_only_while_its_key_is_published(
    jwks_server: JWKSServer,
    clock: FakeClock,
    monotonic: FakeClock,
    rsa_key: rsa.RSAPrivateKey,
    rsa_key2: rsa.RSAPrivateKey,
    decodes: list[str],
    via: Via,
) -> None:
    jwks_server.serve(jwk(rsa_key, "old"), jwk(rsa_key2, "new"))
    config = JWTConfig(issuer=ISSUER, audience=AUDIENCE, jwks_url=jwks_server.url, jwks_max_age=60)
    auth = Authenticator(AuthConfig(jwt=config), clock=clock, monotonic=monotonic)
    token = mint(rsa_key, "RS256", "old")
    with anyio.fail_after(10):
        await via(auth, token)
        await via(auth, token)
        assert (jwks_server.fetches, len(decodes)) == (1, 1)
        # The key set ages out: the token is checked again, which refetches the set as it always did.
        jwks_server.serve(jwk(rsa_key2, "new"))  # the issuer withdrew the old key
        monotonic.now += 61
        with pytest.raises(AuthenticationFailed) as caught:
            await via(auth, token)
        assert caught.value.reason == "unknown_key"
        assert jwks_server.fetches == 2
        # A token remembered under a key that a refresh (forced by another token) removed is checked again.
        jwks_server.serve(jwk(rsa_key2, "new"), jwk(rsa_key, "old"))
        monotonic.now += 11
        other = mint(rsa_key2, "RS256", "new")
        await via(auth, other)
        await via(auth, token)  # "old" is back (fetched for the unknown kid)
        assert jwks_server.fetches == 3
        decoded = len(decodes)
        jwks_server.serve(jwk(rsa_key2, "new"))
        monotonic.now += 11
        assert auth.jwt is not None
        assert auth.jwt.jwks is not None
        await auth.jwt.jwks.refresh()
        with pytest.raises(AuthenticationFailed) as caught:
            await via(auth, token)
        assert caught.value.reason == "unknown_key"
        assert len(decodes) == decoded  # refused before any signature check: the key is gone


async def test_a_remembered_authorization_value_skips_the_token_parse(
    clock: FakeClock, decodes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The HTTP tier's way in: the same header bytes again go straight to the token's time checks."""
    auth = _static(clock)
    token = mint(HS_SECRET, "HS256", "h1", roles=["billing"])
    first = await auth.authenticate_bearer_header(f"Bearer {token}".encode())
    verifications: list[str] = []
    real = JWTVerifier.verified

    async def counting(self: JWTVerifier, token: str) -> Any:
        verifications.append(token)
        return await real(self, token)

    monkeypatch.setattr(JWTVerifier, "verified", counting)
    for _ in range(3):
        assert await auth.authenticate_bearer_header(f"Bearer {token}".encode()) is first
    assert verifications == []
    assert decodes == [token]
    assert await auth.authenticate(_bearer(token)) is first  # one principal, whichever way in


@pytest.mark.parametrize(
    "value",
    [
        "Bearer {token}",
        "bearer   {token}  ",
        "  BEARER {token}",
        "Basic {token}",
        "Bearer",
        "Bearer    ",
        "{token}",
        "Bearer x.y.z",
        "Bearer not-a-jwt",
        "Bearer {forged}",
        "Bearer {expired}",
        "Bearer {api_key}",
    ],
)
@pytest.mark.parametrize("keys_in_bearer", [False, True])
async def test_the_header_bytes_decide_as_the_headers_do(clock: FakeClock, value: str, keys_in_bearer: bool) -> None:
    from mcplane.auth import APIKey, generate_api_key

    api_key, digest = generate_api_key()
    config = AuthConfig(
        jwt=JWTConfig(issuer=ISSUER, audience=AUDIENCE, keys=[StaticKey(kid="h1", secret=SecretStr(HS_SECRET))]),
        api_keys=[APIKey(id="ci", hash=digest, subject="ci-bot")],
        api_keys_in_bearer=keys_in_bearer,
    )
    header = value.format(
        token=mint(HS_SECRET, "HS256", "h1"),
        forged=mint("another-secret-another-secret-another", "HS256", "h1"),
        expired=mint(HS_SECRET, "HS256", "h1", exp=int(NOW) - 3600),
        api_key=api_key,
    )
    authenticators = {way: Authenticator(config, clock=clock) for way in ("headers", "bytes")}

    async def decide(way: str) -> object:
        auth = authenticators[way]
        try:
            if way == "headers":
                principal = await auth.authenticate({"authorization": header})
            else:
                principal = await auth.authenticate_bearer_header(header.encode("latin-1"))
        except AuthenticationFailed as exc:
            return ("refused", exc.reason)
        return (principal.subject, principal.roles, principal.claims.get("api_key_id"))

    # Twice each: the second time, a remembered value takes the short way.
    outcomes = [await decide(way) for _ in range(2) for way in ("headers", "bytes")]
    assert outcomes == [outcomes[0]] * 4

"""API keys: hashed in config, accepted in X-API-Key or as a bearer value."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import SecretStr, ValidationError

from mcplane.auth import (
    APIKey,
    AuthConfig,
    AuthenticationFailed,
    Authenticator,
    JWTConfig,
    StaticKey,
    generate_api_key,
    hash_api_key,
)
from tests.auth.auth_support import AUDIENCE, HS_SECRET, ISSUER, mint

KEY, DIGEST = generate_api_key()
OTHER_KEY, OTHER_DIGEST = generate_api_key(prefix="ops_")


def _config(**options: object) -> AuthConfig:
    keys = [
        APIKey(id="ci", hash=DIGEST, subject="ci-bot", roles=["deployer"], scopes=["tools.write"], tenant="acme"),
        APIKey(hash=OTHER_DIGEST.removeprefix("sha256:").upper(), subject="ops"),
    ]
    return AuthConfig(api_keys=keys, **options)  # type: ignore[arg-type]


async def _reason(auth: Authenticator, headers: dict[str, str]) -> str:
    with pytest.raises(AuthenticationFailed) as caught:
        await auth.authenticate(headers)
    return caught.value.reason


def test_generated_keys_are_random_and_hash_to_their_config_digest() -> None:
    assert KEY.startswith("mcp_")
    assert len(KEY) > 40
    assert KEY != OTHER_KEY
    assert "sha256:" + hashlib.sha256(KEY.encode()).hexdigest() == DIGEST
    assert hash_api_key(KEY) == DIGEST


@pytest.mark.parametrize("header", ["X-API-Key", "x-api-key", "X-Api-Key"])
async def test_a_key_in_the_api_key_header(header: str) -> None:
    principal = await Authenticator(_config()).authenticate({header: KEY})
    assert principal.subject == "ci-bot"
    assert principal.roles == {"deployer"}
    assert principal.scopes == {"tools.write"}
    assert principal.tenant == "acme"
    assert principal.claims == {"auth_method": "api_key", "api_key_id": "ci"}


async def test_a_key_as_a_bearer_value() -> None:
    principal = await Authenticator(_config()).authenticate({"Authorization": f"Bearer {OTHER_KEY}"})
    assert principal.subject == "ops"
    assert principal.claims["api_key_id"] == OTHER_DIGEST.removeprefix("sha256:")[:12]


async def test_bearer_keys_can_be_turned_off() -> None:
    auth = Authenticator(_config(api_keys_in_bearer=False))
    assert await _reason(auth, {"authorization": f"Bearer {KEY}"}) == "invalid_token"
    assert (await auth.authenticate({"x-api-key": KEY})).subject == "ci-bot"


async def test_the_header_name_is_configurable() -> None:
    auth = Authenticator(_config(api_key_header="X-Plane-Key"))
    assert (await auth.authenticate({"x-plane-key": KEY})).subject == "ci-bot"
    assert await _reason(auth, {"x-api-key": KEY}) == "missing_token"


@pytest.mark.parametrize(
    "presented",
    ["mcp_wrong", KEY + "x", KEY[:-1], "", "k" * 600, "ключ-🔑"],
    ids=["other", "longer", "shorter", "empty", "huge", "unicode"],  # the key is random: stable ids
)
async def test_wrong_keys_are_invalid(presented: str) -> None:
    assert await _reason(Authenticator(_config()), {"x-api-key": presented}) == "invalid_token"


async def test_two_credentials_at_once_are_refused() -> None:
    auth = Authenticator(_config())
    assert await _reason(auth, {"x-api-key": KEY, "authorization": f"Bearer {OTHER_KEY}"}) == "invalid_token"


async def test_jwt_and_api_keys_side_by_side() -> None:
    config = AuthConfig(
        jwt=JWTConfig(issuer=ISSUER, audience=AUDIENCE, keys=[StaticKey(secret=SecretStr(HS_SECRET))]),
        api_keys=[APIKey(hash=DIGEST, subject="ci-bot")],
    )
    auth = Authenticator(config)
    assert (await auth.authenticate({"authorization": f"Bearer {mint(HS_SECRET, 'HS256')}"})).subject == "alice"
    assert (await auth.authenticate({"authorization": f"Bearer {KEY}"})).subject == "ci-bot"
    # A JWT-shaped value is never looked up as an API key.
    assert await _reason(auth, {"authorization": "Bearer a.b.c"}) == "invalid_token"


def test_hashes_are_validated() -> None:
    for bad in ("plain-text-key", "sha256:abc", "md5:" + "0" * 32, "sha256:" + "g" * 64):
        with pytest.raises(ValidationError, match="hash"):
            APIKey(hash=bad, subject="x")
    with pytest.raises(ValidationError, match="twice"):
        AuthConfig(api_keys=[APIKey(hash=DIGEST, subject="a", id="a"), APIKey(hash=DIGEST, subject="b", id="b")])
    with pytest.raises(ValidationError, match="unique"):
        AuthConfig(api_keys=[APIKey(hash=DIGEST, subject="a", id="a"), APIKey(hash=OTHER_DIGEST, subject="b", id="a")])

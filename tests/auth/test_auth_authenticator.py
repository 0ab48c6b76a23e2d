"""The authenticator's rules across methods, the config model, and the stdio principal."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from mcplane.auth import (
    REASONS,
    APIKey,
    AuthConfig,
    AuthenticationFailed,
    Authenticator,
    JWTConfig,
    LocalPrincipal,
    StaticKey,
    StdioAuth,
    generate_api_key,
    principal_from_env,
)
from mcplane.context import ANONYMOUS
from mcplane.errors import Unauthenticated
from tests.auth.auth_support import AUDIENCE, HS_SECRET, ISSUER, mint

JWT = JWTConfig(issuer=ISSUER, audience=AUDIENCE, keys=[StaticKey(secret=SecretStr(HS_SECRET))])


async def _reason(auth: Authenticator, headers: dict[str, str]) -> str:
    with pytest.raises(AuthenticationFailed) as caught:
        await auth.authenticate(headers)
    return caught.value.reason


def test_every_reason_is_an_unauthenticated_error_with_a_safe_message() -> None:
    for reason, message in REASONS.items():
        error = AuthenticationFailed(reason)
        assert isinstance(error, Unauthenticated)
        assert error.to_dict("cid") == {
            "code": "unauthenticated",
            "message": message,
            "retryable": False,
            "correlation_id": "cid",
            "details": {"reason": reason},
        }
    assert sorted(REASONS) == sorted(
        [
            "missing_token",
            "invalid_token",
            "expired",
            "not_yet_valid",
            "wrong_audience",
            "wrong_issuer",
            "bad_signature",
            "unknown_key",
            "missing_certificate",
            "invalid_certificate",
        ]
    )


async def test_no_credential() -> None:
    assert await _reason(Authenticator(AuthConfig(jwt=JWT)), {}) == "missing_token"
    assert await Authenticator(AuthConfig(jwt=JWT, required=False)).authenticate({}) is ANONYMOUS


async def test_a_bad_credential_never_degrades_to_anonymous() -> None:
    auth = Authenticator(AuthConfig(jwt=JWT, required=False))
    assert await _reason(auth, {"authorization": "Bearer x.y.z"}) == "invalid_token"


@pytest.mark.parametrize(
    "value", ["Basic YWxpY2U6c2VjcmV0", "Bearer", "Bearer    ", "Token abc", "bearer", "NotBearer x.y.z"]
)
async def test_other_schemes_and_empty_bearers_are_invalid(value: str) -> None:
    assert await _reason(Authenticator(AuthConfig(jwt=JWT)), {"authorization": value}) == "invalid_token"


async def test_the_scheme_is_case_insensitive() -> None:
    principal = await Authenticator(AuthConfig(jwt=JWT)).authenticate(
        {"AUTHORIZATION": f"bEaReR {mint(HS_SECRET, 'HS256')}"}
    )
    assert principal.subject == "alice"


async def test_the_audience_defaults_to_the_resource_url() -> None:
    config = AuthConfig(resource=AUDIENCE, jwt=JWTConfig(issuer=ISSUER, keys=[StaticKey(secret=SecretStr(HS_SECRET))]))
    assert config.jwt_audience == AUDIENCE
    auth = Authenticator(config)
    assert (await auth.authenticate({"authorization": f"Bearer {mint(HS_SECRET, 'HS256')}"})).subject == "alice"
    other = mint(HS_SECRET, "HS256", aud="https://elsewhere.example.com")
    assert await _reason(auth, {"authorization": f"Bearer {other}"}) == "wrong_audience"


async def test_the_audience_check_can_be_turned_off_explicitly() -> None:
    config = AuthConfig(
        jwt=JWTConfig(issuer=ISSUER, verify_audience=False, keys=[StaticKey(secret=SecretStr(HS_SECRET))])
    )
    token = mint(HS_SECRET, "HS256", aud="https://anything.example.com")
    assert (await Authenticator(config).authenticate({"authorization": f"Bearer {token}"})).subject == "alice"


def test_config_mistakes_are_caught() -> None:
    with pytest.raises(ValidationError, match="no jwt, api_keys"):
        AuthConfig()
    with pytest.raises(ValidationError, match="audience"):
        AuthConfig(jwt=JWTConfig(keys=[StaticKey(secret=SecretStr(HS_SECRET))]))
    with pytest.raises(ValidationError, match="resource"):
        AuthConfig(jwt=JWT, resource="mcp.example.com")
    with pytest.raises(ValidationError, match="jwks_url"):
        JWTConfig(jwks_url="file:///etc/passwd")
    with pytest.raises(ValidationError, match="duration"):
        JWTConfig.model_validate({"keys": [{"secret": HS_SECRET}], "leeway": "soon"})
    with pytest.raises(ValidationError, match="extra"):
        AuthConfig.model_validate({"jwt": JWT.model_dump(), "requierd": False})
    assert AuthConfig(required=False).required is False
    durations = JWTConfig.model_validate({"keys": [{"secret": HS_SECRET}], "leeway": "2m", "jwks_timeout": "500ms"})
    assert (durations.leeway, durations.jwks_timeout) == (120, 0.5)


async def test_stdio_token_from_the_environment() -> None:
    config = AuthConfig(jwt=JWT)
    principal = await principal_from_env(config, environ={"MCPLANE_TOKEN": mint(HS_SECRET, "HS256")})
    assert principal.subject == "alice"
    expired = mint(HS_SECRET, "HS256", exp=1_000)
    with pytest.raises(AuthenticationFailed) as caught:
        await principal_from_env(config, Authenticator(config), environ={"MCPLANE_TOKEN": expired})
    assert caught.value.reason == "expired"


async def test_stdio_api_key_in_a_custom_variable() -> None:
    key, digest = generate_api_key()
    config = AuthConfig(api_keys=[APIKey(hash=digest, subject="robot")], stdio=StdioAuth(token_env="ROBOT_KEY"))
    assert (await principal_from_env(config, environ={"ROBOT_KEY": key})).subject == "robot"


async def test_stdio_local_principal_and_fallbacks() -> None:
    local = LocalPrincipal(subject="dev", roles=["admin"], scopes=["all"], tenant="home")
    principal = await principal_from_env(AuthConfig(stdio=StdioAuth(principal=local)), environ={})
    assert (principal.subject, principal.roles, principal.scopes, principal.tenant) == (
        "dev",
        {"admin"},
        {"all"},
        "home",
    )
    assert await principal_from_env(AuthConfig(jwt=JWT, required=False), environ={}) is ANONYMOUS
    with pytest.raises(AuthenticationFailed) as caught:
        await principal_from_env(AuthConfig(jwt=JWT), environ={"MCPLANE_TOKEN": "  "})
    assert caught.value.reason == "missing_token"

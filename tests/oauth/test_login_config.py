"""The ``login:`` configuration: presets fill what they should, explicit values win, and a
configuration that cannot work is refused with the key and a clear reason."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from mcplane.oauth.login import UpstreamLoginConfig
from mcplane.secrets import MASK, Secret


def load(**data: Any) -> UpstreamLoginConfig:
    return UpstreamLoginConfig.model_validate({"client_id": "mcplane", **data})


def test_explicit_values_win_over_the_preset() -> None:
    okta = load(preset="okta", tenant="dev-1.okta.com", issuer="https://dev-1.okta.com", claims={"roles": "perms"})
    assert okta.issuer == "https://dev-1.okta.com"
    assert (okta.claims.roles, okta.claims.groups) == ("perms", "groups")
    custom = load(preset="okta", tenant="dev-1.okta.com", authorization_server="aus1")
    assert custom.issuer == "https://dev-1.okta.com/oauth2/aus1"
    assert load(preset="github", fetch_email=False, scopes=["read:user", "read:org"]).scopes == [
        "read:user",
        "read:org",
    ]


def test_secrets_never_show() -> None:
    config = load(issuer="https://login.example.com", client_secret=Secret("s3cr3t", "${env:X}"))
    assert "s3cr3t" not in repr(config)
    assert "s3cr3t" not in config.model_dump_json()
    assert MASK in config.model_dump_json()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "needs `issuer`"),
        ({"preset": "entra"}, "needs tenant"),
        ({"preset": "entra", "tenant": "common"}, "tenant id, not 'common'"),
        ({"preset": "auth0"}, "needs tenant"),
        ({"preset": "keycloak", "base_url": "https://sso.example.com"}, "needs realm"),
        ({"issuer": "http://login.example.com"}, "https URL"),
        ({"issuer": "https://login.example.com", "scopes": ["email"]}, "must include `openid`"),
        ({"issuer": "https://login.example.com", "authorize_params": {"state": "x"}}, "cannot set state"),
        ({"issuer": "https://login.example.com", "token_auth_method": "client_secret_post"}, "needs a client_secret"),
        ({"issuer": "https://login.example.com", "unknown": 1}, "Extra inputs"),
    ],
)
def test_an_unusable_configuration_is_refused(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        load(**data)
    assert message in str(caught.value)


def test_plain_http_is_allowed_on_loopback_only() -> None:
    assert load(issuer="http://127.0.0.1:8080").issuer == "http://127.0.0.1:8080"
    assert load(issuer="http://localhost:8080/realms/x").issuer == "http://localhost:8080/realms/x"
    assert load(issuer="http://[::1]:8080").issuer == "http://[::1]:8080"

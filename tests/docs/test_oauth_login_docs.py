"""docs/oauth-login.md, checked: every YAML example is a valid ``login:`` configuration, each preset
has one and fills the documented issuer, every key is in the tables, and the failure reasons are
the code's."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from tests.conftest import REPO_ROOT

from mcplane.oauth.login import LoginClaims, UpstreamLoginConfig

DOC = (REPO_ROOT / "docs" / "oauth-login.md").read_text(encoding="utf-8")
YAML_BLOCKS = re.findall(r"```yaml\n(.*?)```", DOC, flags=re.S)
SOURCES = (REPO_ROOT / "src" / "mcplane" / "oauth").glob("login*.py")


def _config(block: str) -> UpstreamLoginConfig:
    document: Any = yaml.safe_load(block)
    return UpstreamLoginConfig.model_validate(document["login"])


@pytest.mark.parametrize("index", range(len(YAML_BLOCKS)))
def test_every_yaml_example_is_a_valid_login(index: int) -> None:
    _config(YAML_BLOCKS[index])


def test_each_preset_has_an_example_that_fills_the_documented_issuer() -> None:
    configs = {config.preset: config for config in map(_config, YAML_BLOCKS)}
    assert set(configs) == {"oidc", "google", "github", "entra", "auth0", "okta", "keycloak"}
    assert configs["google"].issuer == "https://accounts.google.com"
    assert configs["entra"].issuer == "https://login.microsoftonline.com/5b3c2a1e-0000-4000-8000-0123456789ab/v2.0"
    assert configs["auth0"].issuer == "https://example.us.auth0.com/"
    assert configs["okta"].issuer == "https://dev-123456.okta.com/oauth2/default"
    assert configs["keycloak"].issuer == "https://sso.example.com/realms/corp"
    assert configs["keycloak"].claims.roles == "realm_access.roles"
    assert configs["auth0"].claims.roles == "https://mcplane.example.com/roles"
    github = configs["github"]
    assert (github.issuer, github.base_url, github.api_url) == (None, "https://github.com", "https://api.github.com")
    assert github.scopes == ["read:user", "user:email"]
    assert github.claims.subject == "id"


def test_every_key_is_documented() -> None:
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", DOC, flags=re.M))
    keys = set(UpstreamLoginConfig.model_fields) | set(LoginClaims.model_fields)
    assert keys <= documented, f"docs/oauth-login.md does not describe {sorted(keys - documented)}"


def test_the_failure_reasons_are_the_codes() -> None:
    section = DOC.split("## When a login fails", 1)[1]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.M))
    used: set[str] = set()
    for source in SOURCES:
        used |= set(re.findall(r'LoginFailed\(\s*"([a-z_]+)"', source.read_text(encoding="utf-8")))
    assert used == documented

"""JWT verification with static keys: every way a token can be wrong gets its reason code."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import SecretStr, ValidationError

from mcplane.auth import AuthConfig, AuthenticationFailed, Authenticator, JWTConfig, StaticKey
from tests.auth.auth_support import AUDIENCE, HS_SECRET, ISSUER, NOW, FakeClock, mint, public_pem


def _auth(clock: FakeClock, *keys: StaticKey, **jwt_options: Any) -> Authenticator:
    options: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, **jwt_options}
    return Authenticator(AuthConfig(jwt=JWTConfig(keys=list(keys), **options)), clock=clock)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _reason(auth: Authenticator, token: str) -> str:
    with pytest.raises(AuthenticationFailed) as caught:
        await auth.authenticate(_bearer(token))
    assert caught.value.code == "unauthenticated"
    assert caught.value.details == {"reason": caught.value.reason}
    return caught.value.reason


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.fixture
def rsa_auth(clock: FakeClock, rsa_key: rsa.RSAPrivateKey) -> Authenticator:
    return _auth(clock, StaticKey(kid="r1", pem=public_pem(rsa_key)))


async def test_each_algorithm_verifies_with_its_static_key(
    clock: FakeClock, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    auth = _auth(
        clock,
        StaticKey(kid="h1", secret=SecretStr(HS_SECRET)),
        StaticKey(kid="r1", pem=public_pem(rsa_key)),
        StaticKey(kid="e1", pem=public_pem(ec_key)),
    )
    for key, alg, kid in ((HS_SECRET, "HS256", "h1"), (rsa_key, "RS256", "r1"), (ec_key, "ES256", "e1")):
        principal = await auth.authenticate(_bearer(mint(key, alg, kid, roles=["billing"], scope="a b")))
        assert principal.subject == "alice"
        assert principal.roles == {"billing"}
        assert principal.scopes == {"a", "b"}
        assert principal.claims["iss"] == ISSUER


async def test_a_token_without_kid_is_tried_against_the_keys_of_its_algorithm(
    clock: FakeClock, rsa_key: rsa.RSAPrivateKey, rsa_key2: rsa.RSAPrivateKey
) -> None:
    auth = _auth(clock, StaticKey(pem=public_pem(rsa_key2)), StaticKey(pem=public_pem(rsa_key)))
    assert (await auth.authenticate(_bearer(mint(rsa_key, "RS256")))).subject == "alice"


@pytest.mark.parametrize(
    "token",
    ["garbage", "a.b", "a.b.c", "x" * 9000, _b64({"alg": "RS256"}) + ".e30.", "...", "Bearer x.y.z"],
)
async def test_malformed_tokens_are_invalid(rsa_auth: Authenticator, token: str) -> None:
    assert await _reason(rsa_auth, token) == "invalid_token"


async def test_expiry_and_not_before_use_the_injected_clock_and_leeway(
    rsa_auth: Authenticator, clock: FakeClock, rsa_key: rsa.RSAPrivateKey
) -> None:
    token = mint(rsa_key, "RS256", "r1", exp=int(NOW) + 60, nbf=int(NOW) - 10)
    assert (await rsa_auth.authenticate(_bearer(token))).subject == "alice"
    clock.now = NOW + 60 + 29  # past exp, inside the 30 s leeway
    assert (await rsa_auth.authenticate(_bearer(token))).subject == "alice"
    clock.now = NOW + 60 + 30
    assert await _reason(rsa_auth, token) == "expired"

    early = mint(rsa_key, "RS256", "r1", nbf=int(NOW) + 100)
    clock.now = NOW + 69  # 31 s before nbf
    assert await _reason(rsa_auth, early) == "not_yet_valid"
    clock.now = NOW + 71  # 29 s before nbf: inside the leeway
    assert (await rsa_auth.authenticate(_bearer(early))).subject == "alice"


async def test_leeway_is_configurable(clock: FakeClock, rsa_key: rsa.RSAPrivateKey) -> None:
    auth = _auth(clock, StaticKey(pem=public_pem(rsa_key)), leeway="0s")
    clock.now = NOW + 300
    assert await _reason(auth, mint(rsa_key, "RS256")) == "expired"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"aud": "https://other.example.com/mcp"}, "wrong_audience"),
        ({"aud": None}, "wrong_audience"),
        ({"aud": ["https://a.example.com", 7]}, "wrong_audience"),
        ({"iss": "https://evil.example.com"}, "wrong_issuer"),
        ({"iss": None}, "wrong_issuer"),
        ({"exp": None}, "invalid_token"),
        ({"exp": "1900000000"}, "invalid_token"),
        ({"exp": True}, "invalid_token"),
        ({"exp": float("inf")}, "invalid_token"),
        ({"exp": float("nan")}, "invalid_token"),
        ({"nbf": "yesterday"}, "invalid_token"),
        ({"sub": None}, "invalid_token"),
        ({"sub": 42}, "invalid_token"),
        ({"roles": {"admin": True}}, "invalid_token"),
        ({"roles": ["admin", 3]}, "invalid_token"),
    ],
)
async def test_claim_problems_have_their_reason(
    rsa_auth: Authenticator, rsa_key: rsa.RSAPrivateKey, overrides: dict[str, Any], reason: str
) -> None:
    assert await _reason(rsa_auth, mint(rsa_key, "RS256", "r1", **overrides)) == reason


async def test_a_list_audience_matches_when_one_entry_is_ours(
    rsa_auth: Authenticator, rsa_key: rsa.RSAPrivateKey
) -> None:
    token = mint(rsa_key, "RS256", "r1", aud=["https://other.example.com", AUDIENCE])
    assert (await rsa_auth.authenticate(_bearer(token))).subject == "alice"


async def test_a_token_signed_by_another_key_has_a_bad_signature(
    rsa_auth: Authenticator, rsa_key2: rsa.RSAPrivateKey
) -> None:
    assert await _reason(rsa_auth, mint(rsa_key2, "RS256", "r1")) == "bad_signature"


async def test_a_tampered_payload_has_a_bad_signature(rsa_auth: Authenticator, rsa_key: rsa.RSAPrivateKey) -> None:
    header, _, signature = mint(rsa_key, "RS256", "r1").split(".")
    forged = f"{header}.{_b64({'sub': 'root', 'iss': ISSUER, 'aud': AUDIENCE, 'exp': int(NOW) + 300})}.{signature}"
    assert await _reason(rsa_auth, forged) == "bad_signature"


async def test_an_unknown_kid_is_an_unknown_key(rsa_auth: Authenticator, rsa_key: rsa.RSAPrivateKey) -> None:
    assert await _reason(rsa_auth, mint(rsa_key, "RS256", "nope")) == "unknown_key"


async def test_alg_none_is_refused(rsa_auth: Authenticator) -> None:
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': 'r1'})}.{_b64({'sub': 'root', 'exp': int(NOW) + 60})}."
    assert await _reason(rsa_auth, unsigned) == "invalid_token"
    unsigned_with_dummy_sig = unsigned + "c2ln"
    assert await _reason(rsa_auth, unsigned_with_dummy_sig) == "invalid_token"


async def test_an_rsa_public_key_used_as_an_hmac_secret_is_refused(
    rsa_auth: Authenticator, rsa_key: rsa.RSAPrivateKey
) -> None:
    # The classic confusion attack: sign HS256 with the (public) PEM as the secret.
    pem = public_pem(rsa_key).encode()
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': 'r1'})}.{_b64(_claims_for_attack())}"
    signature = base64.urlsafe_b64encode(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())
    forged = f"{signing_input}.{signature.rstrip(b'=').decode()}"
    assert await _reason(rsa_auth, forged) == "invalid_token"


def _claims_for_attack() -> dict[str, Any]:
    return {"sub": "root", "iss": ISSUER, "aud": AUDIENCE, "exp": int(NOW) + 300, "roles": ["admin"]}


async def test_critical_header_extensions_are_refused(rsa_auth: Authenticator, rsa_key: rsa.RSAPrivateKey) -> None:
    for extra in ({"crit": ["exp"], "exp": 1}, {"crit": ["b64"], "b64": False}):
        token = jwt.encode(_claims_for_attack(), rsa_key, algorithm="RS256", headers={"kid": "r1", **extra})
        assert await _reason(rsa_auth, token) == "invalid_token"


async def test_an_algorithm_outside_the_allow_list_is_refused(clock: FakeClock) -> None:
    auth = _auth(clock, StaticKey(secret=SecretStr(HS_SECRET)), algorithms=["RS256", "ES256"])
    assert await _reason(auth, mint(HS_SECRET, "HS256")) == "invalid_token"
    other = jwt.encode({"sub": "a", "exp": int(NOW) + 60}, HS_SECRET + "x" * 30, algorithm="HS512")
    assert await _reason(auth, other) == "invalid_token"


@pytest.mark.parametrize(
    ("subject", "ok"),
    [
        ("ålice-日本-🚀", True),
        ("Zoë", True),
        ("ali\u0000ce", False),  # NUL
        ("alice\nINFO forged log line", False),
        ("\u202eecila", False),  # right-to-left override
        ("ali\u200bce", False),  # zero-width space
        ("ali\u2028ce", False),  # line separator
        ("\ud800", False),  # lone surrogate
        ("", False),
    ],
)
async def test_odd_unicode_in_the_subject(
    rsa_auth: Authenticator, rsa_key: rsa.RSAPrivateKey, subject: str, ok: bool
) -> None:
    token = mint(rsa_key, "RS256", "r1", sub=subject)
    if ok:
        assert (await rsa_auth.authenticate(_bearer(token))).subject == subject
    else:
        assert await _reason(rsa_auth, token) == "invalid_token"


async def test_look_alike_roles_are_kept_verbatim(rsa_auth: Authenticator, rsa_key: rsa.RSAPrivateKey) -> None:
    cyrillic_a, fullwidth = "\u0430dmin", "\uff41\uff44\uff4d\uff49\uff4e"
    principal = await rsa_auth.authenticate(_bearer(mint(rsa_key, "RS256", "r1", roles=[cyrillic_a, fullwidth])))
    assert "admin" not in principal.roles
    assert principal.roles == {cyrillic_a, fullwidth}


async def test_claims_mapping_is_configurable(clock: FakeClock, rsa_key: rsa.RSAPrivateKey) -> None:
    auth = _auth(
        clock,
        StaticKey(pem=public_pem(rsa_key)),
        claims={"subject": "email", "roles": "realm_access.roles", "tenant": "https://example.com/org"},
    )
    token = mint(
        rsa_key,
        "RS256",
        email="alice@example.com",
        realm_access={"roles": ["support", "billing"]},
        scp=["files.read", "files.write"],
        **{"https://example.com/org": "acme"},
    )
    principal = await auth.authenticate(_bearer(token))
    assert principal.subject == "alice@example.com"
    assert principal.roles == {"support", "billing"}
    assert principal.scopes == {"files.read", "files.write"}
    assert principal.tenant == "acme"


async def test_scope_wins_over_scp_and_a_roles_string_is_one_role(
    rsa_auth: Authenticator, rsa_key: rsa.RSAPrivateKey
) -> None:
    """``"user admin"`` must not grant ``admin``: by default a roles string is one role."""
    token = mint(rsa_key, "RS256", "r1", scope="a b", scp=["c"], roles="user admin", tenant="t1")
    principal = await rsa_auth.authenticate(_bearer(token))
    assert principal.scopes == {"a", "b"}  # scope is space-separated by definition (RFC 9068)
    assert principal.roles == {"user admin"}
    assert "admin" not in principal.roles
    assert principal.tenant == "t1"


async def test_a_roles_string_is_split_when_configured(clock: FakeClock, rsa_key: rsa.RSAPrivateKey) -> None:
    auth = _auth(clock, StaticKey(kid="r1", pem=public_pem(rsa_key)), claims={"roles_string": "split"})
    token = mint(rsa_key, "RS256", "r1", scp="files.read files.write", roles="admin ops")
    principal = await auth.authenticate(_bearer(token))
    assert principal.roles == {"admin", "ops"}
    assert principal.scopes == {"files.read", "files.write"}  # scp as a string, as Entra writes it


def test_key_configuration_is_checked(rsa_key: rsa.RSAPrivateKey) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    p384 = ec.generate_private_key(ec.SECP384R1())
    private_pem = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----"
    for bad in (
        {"secret": "short"},
        {"pem": public_pem(small)},
        {"pem": public_pem(p384)},
        {"pem": private_pem},
        {"pem": "not a key"},
        {"pem": public_pem(rsa_key), "secret": HS_SECRET},
        {},
    ):
        with pytest.raises(ValidationError):
            StaticKey.model_validate(bad)
    with pytest.raises(ValidationError, match="keys"):
        JWTConfig()

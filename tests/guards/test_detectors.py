"""What each guard kind finds, what it leaves alone, and that a scan costs time linear in the text."""

from __future__ import annotations

import re
import time

import pytest

from mcplane.guards import KINDS, Scanner, detectors_for
from mcplane.guards.detectors import GROUPS, iban_valid, luhn_valid
from mcplane.guards.scan import _Slot  # pyright: ignore[reportPrivateUsage]

SECRET = "sup3r-s3cret-value"
SECRETS = re.compile(re.escape(SECRET) + "|" + re.escape("short"))


def _found(text: str, kinds: tuple[str, ...] = KINDS) -> list[tuple[str, str]]:
    scanner = Scanner(detectors_for(kinds, lambda: SECRETS))
    [hits] = scanner.scan([_Slot(text, None)]).hits
    return [(hit.kind, text[hit.start : hit.end]) for hit in hits]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"db password is {SECRET}!", [("secret", SECRET)]),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----\nafter",
            [("private_key", "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----")],
        ),
        (
            "x -----BEGIN OPENSSH PRIVATE KEY-----\\nb3Blbn",
            [("private_key", "-----BEGIN OPENSSH PRIVATE KEY-----\\nb3Blbn")],
        ),
        ("id AKIAIOSFODNN7EXAMPLE.", [("aws_access_key_id", "AKIAIOSFODNN7EXAMPLE")]),
        (
            '"SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"',
            [("aws_secret_access_key", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")],
        ),
        ("ghp_0123456789abcdefghijABCDEFGHIJ012345", [("github_token", "ghp_0123456789abcdefghijABCDEFGHIJ012345")]),
        (
            "pat github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
            [("github_token", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz")],
        ),
        ("xoxb-123456789012-1234567890123-AbCdEf", [("slack_token", "xoxb-123456789012-1234567890123-AbCdEf")]),
        (
            "https://hooks.slack.com/services/T000/B000/XXXXXXXX",
            [("slack_token", "https://hooks.slack.com/services/T000/B000/XXXXXXXX")],
        ),
        (
            "t=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.abc_DEF-123",
            [("jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.abc_DEF-123")],
        ),
        ("Authorization: Bearer abc123def456ghi", [("bearer_token", "abc123def456ghi")]),
        ("AUTHORIZATION: BEARER ABC123DEF456", [("bearer_token", "ABC123DEF456")]),
        ("url?api_key=abcd1234efgh&x=1", [("api_key", "abcd1234efgh")]),
        ('{"client_secret": "Zx9-Qq8.Ww7"}', [("api_key", "Zx9-Qq8.Ww7")]),
        ("PASSWORD: s3cretpw", [("api_key", "s3cretpw")]),
        ("write to alice.smith+tag@example.co.uk.", [("email", "alice.smith+tag@example.co.uk")]),
        ("card 4111 1111 1111 1111 ok", [("card_number", "4111 1111 1111 1111")]),
        ("card 5500-0000-0000-0004", [("card_number", "5500-0000-0000-0004")]),
        ("IBAN DE89 3704 0044 0532 0130 00 FOR RENT", [("iban", "DE89 3704 0044 0532 0130 00")]),
        ("GB82WEST12345698765432", [("iban", "GB82WEST12345698765432")]),
        ("call +1 (415) 555-0100 now", [("phone", "+1 (415) 555-0100")]),
        ("+44 20 7946 0958", [("phone", "+44 20 7946 0958")]),
    ],
)
def test_each_kind_is_found(text: str, expected: list[tuple[str, str]]) -> None:
    assert _found(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "a short secret: short",  # configured, but too short to search
        "Bearer authentication is described in RFC 6750",  # prose: no digit in the 'token'
        "bob@localhost, x@y.z1, @handle",
        "order 4111 1111 1111 1112 (Luhn fails), timestamp 1733480000000, id 1234567890123456789012",
        "DE88 3704 0044 0532 0130 00 (bad check digits), XX89370400440532013000",
        "version +1.2.3, 2 +2 = 4, +123",
        "the api_key field is documented; password: short",
        "AKIAIOSFODNN7EXAMPLEX is too long, 9AKIAIOSFODNN7EXAMPLE glued",
        "eyJhbGciOiJIUzI1NiJ9 alone",
        "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----",
    ],
)
def test_look_alikes_are_left_alone(text: str) -> None:
    assert _found(text) == []


def test_only_the_configured_kinds_are_looked_for() -> None:
    text = f"alice@example.com {SECRET} AKIAIOSFODNN7EXAMPLE"
    assert [kind for kind, _ in _found(text, ("email",))] == ["email"]
    assert [kind for kind, _ in _found(text, GROUPS["credentials"])] == ["aws_access_key_id"]
    assert Scanner(detectors_for(["secret"])).scan([_Slot(SECRET, None)]).counts == {}  # no resolver: nothing


def test_luhn_and_mod97() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    assert not luhn_valid("4111")  # too short for a card
    assert iban_valid("DE89370400440532013000")
    assert not iban_valid("DE89370400440532013001")
    assert not iban_valid("DE8937040044053201300")  # Germany's IBANs have 22 characters


HOSTILE = {
    "digits": "4" * 1000 + " ",
    "spaced digits": "4 " * 500,
    "local parts": "a." * 500,
    "at signs": "a@" * 500,
    "domains": "x@a." * 250,
    "plus signs": "+1 " * 333,
    "capitals": "AB12 " * 200,
    "aws prefixes": "AKIA" * 250,
    "jwt prefixes": "eyJa." * 200,
    "bearers": "Bearer " * 143,
    "key names": "api_key=" * 125,
    "pem headers": "-----BEGIN PRIVATE KEY-----" * 37,
    "secret prefixes": SECRET[:-1] * 60,
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_scan_is_linear_in_the_text(name: str) -> None:
    """Each hostile text, 64 KB and 256 KB: four times the text may not take much more than four
    times as long (a backtracking pattern would take 16 times or more), and never long."""
    scanner = Scanner(detectors_for(KINDS, lambda: SECRETS))
    unit = HOSTILE[name]

    def cost(size: int) -> float:
        text = (unit * (size // len(unit) + 1))[:size]
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            scanner.scan([_Slot(text, None)])
            best = min(best, time.perf_counter() - started)
        return best

    small, large = cost(64 * 1024), cost(256 * 1024)
    assert large < 2.0, f"{name}: {large:.3f} s for 256 KB"
    assert large < 8 * small + 0.02, f"{name}: 64 KB {small * 1000:.1f} ms, 256 KB {large * 1000:.1f} ms"

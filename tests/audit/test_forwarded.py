"""X-Forwarded-For is believed only from trusted proxies, read from the right; the config names those proxies."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mcplane.audit.forwarded import TrustedProxies
from mcplane.config import load_config
from mcplane.errors import ConfigError
from mcplane.middleware.audit import AuditMiddleware
from mcplane.stack import build_pipeline

PROXIES = TrustedProxies(["127.0.0.1", "10.0.0.0/8", "fd00::/8"])


def test_nothing_is_trusted_by_default() -> None:
    assert not TrustedProxies()
    assert TrustedProxies().client_ip("127.0.0.1", "203.0.113.66") == "127.0.0.1"


def test_an_untrusted_peer_is_the_client_whatever_it_forwards() -> None:
    assert PROXIES.client_ip("198.51.100.2", "203.0.113.66") == "198.51.100.2"
    assert PROXIES.client_ip("unix-socket", "203.0.113.66") == "unix-socket"


@pytest.mark.parametrize(
    ("forwarded_for", "client"),
    [
        ("203.0.113.66", "203.0.113.66"),
        # The right-most hop that is not a trusted proxy: the left ones are whatever the client wrote.
        ("198.51.100.7, 203.0.113.66, 10.1.2.3", "203.0.113.66"),
        ("10.0.0.9, 10.1.2.3", "10.0.0.9"),  # every hop trusted: the left-most
        ("203.0.113.66:4711", "203.0.113.66"),
        ("[2001:db8::1]:443, fd00::5", "2001:db8::1"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("203.0.113.66, , 10.1.2.3", "203.0.113.66"),
        # Not an address: the trusted proxy that passed it on is all that can be named.
        ("203.0.113.66, unknown", "127.0.0.1"),
        ("203.0.113.66, garbage, 10.1.2.3", "10.1.2.3"),
        ("", "127.0.0.1"),
    ],
)
def test_a_trusted_peer_is_believed_right_to_left(forwarded_for: str, client: str) -> None:
    assert PROXIES.client_ip("127.0.0.1", forwarded_for) == client


def test_an_ipv4_mapped_peer_is_matched_as_ipv4() -> None:
    assert PROXIES.client_ip("::ffff:10.0.0.4", "203.0.113.66") == "203.0.113.66"


def test_everyone_is_the_deprecated_trust_forwarded() -> None:
    assert TrustedProxies.everyone().client_ip("198.51.100.2", "203.0.113.66, 192.0.2.1") == "203.0.113.66"


def test_trusted_proxies_is_read_from_the_http_section() -> None:
    config = load_config(environ={"MCPLANE__HTTP__TRUSTED_PROXIES": "[10.0.0.0/8, '::1']"})
    assert config.http.trusted_proxies == ["10.0.0.0/8", "::1"]
    assert load_config(environ={}).http.trusted_proxies == []


def test_a_bad_trusted_proxy_entry_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"http\.trusted_proxies: 'proxy\.internal' is not an IP address or CIDR"):
        load_config(environ={"MCPLANE__HTTP__TRUSTED_PROXIES": "[10.0.0.1, proxy.internal]"})


async def _audit_layer(environ: dict[str, str]) -> AuditMiddleware:
    layers = build_pipeline(load_config(environ=environ), {})
    await layers.aclose()
    audit = layers.pipeline.get("audit")
    assert isinstance(audit, AuditMiddleware)
    return audit


async def test_the_audit_layer_gets_the_trusted_proxies(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    environ = {"MCPLANE__AUDIT__PATH": str(tmp_path / "audit.jsonl"), "MCPLANE__HTTP__TRUSTED_PROXIES": "[10.0.0.0/8]"}
    with caplog.at_level(logging.WARNING, logger="mcplane.layers"):
        audit = await _audit_layer(environ)
    assert audit.proxies.client_ip("10.0.0.3", "203.0.113.66") == "203.0.113.66"
    assert audit.proxies.client_ip("127.0.0.1", "203.0.113.66") == "127.0.0.1"
    assert "deprecated" not in caplog.text


async def test_trust_forwarded_still_works_and_says_it_is_deprecated(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    environ = {"MCPLANE__AUDIT__PATH": str(tmp_path / "audit.jsonl"), "MCPLANE__AUDIT__TRUST_FORWARDED": "true"}
    with caplog.at_level(logging.WARNING, logger="mcplane.layers"):
        audit = await _audit_layer(environ)
    assert audit.proxies.client_ip("198.51.100.2", "203.0.113.66") == "203.0.113.66"
    assert "audit.trust_forwarded is deprecated" in caplog.text
    assert "http.trusted_proxies" in caplog.text

"""Host and Origin allow-lists: exact values, ``name:*`` for any port, ``*`` for anything."""

from __future__ import annotations

import pytest

from mcplane.transports.security import LOOPBACK_HOSTS, LOOPBACK_ORIGINS, HostOriginPolicy

LOOPBACK = HostOriginPolicy()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:8000", "localhost", "LOCALHOST:65535", "[::1]", "[::1]:1"])
def test_loopback_hosts_are_allowed(host: str) -> None:
    assert LOOPBACK.check(host, None) is None


@pytest.mark.parametrize(
    "host",
    [
        None,
        "",
        "example.com",
        "127.0.0.2",
        "localhost.example.com",
        "localhost:",
        "localhost:80x",
        "localhost:*",
        "127.0.0.1.nip.io",
        "[::1]x",
    ],
)
def test_other_hosts_are_421(host: str | None) -> None:
    assert LOOPBACK.check(host, None) == (421, "host not allowed")


@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost",
        "http://localhost:3000",
        "https://127.0.0.1:8443",
        "https://127.0.0.1",
        "http://[::1]:80",
        "https://[::1]",
        "HTTP://LOCALHOST",
    ],
)
def test_loopback_origins_are_allowed(origin: str) -> None:
    assert LOOPBACK.check("localhost", origin) is None


@pytest.mark.parametrize(
    "origin",
    [
        "https://attacker.example",
        "http://localhost.attacker.example",
        "null",
        "",
        "http://localhost:80/evil",
        "http://localhost:*",
        "file://",
    ],
)
def test_other_origins_are_403(origin: str) -> None:
    assert LOOPBACK.check("localhost", origin) == (403, "origin not allowed")


def test_absent_origin_is_allowed_for_non_browser_clients() -> None:
    assert LOOPBACK.check("127.0.0.1:9000", None) is None


def test_host_is_checked_before_origin() -> None:
    assert LOOPBACK.check("example.com", "https://attacker.example") == (421, "host not allowed")


def test_empty_host_list_disables_the_host_check_only() -> None:
    behind_proxy = HostOriginPolicy(allowed_hosts=(), allowed_origins=("https://app.example",))
    assert behind_proxy.check("anything.example", None) is None
    assert behind_proxy.check(None, "https://app.example") is None
    assert behind_proxy.check("anything.example", "https://other.example") == (403, "origin not allowed")


def test_wildcards() -> None:
    policy = HostOriginPolicy(allowed_hosts=("*",), allowed_origins=("https://app.example:*",))
    assert policy.check("whatever:1234", "https://app.example:8443") is None
    assert policy.check("whatever", "https://app.example") == (403, "origin not allowed")
    assert policy.check("whatever", "https://app.example:") == (403, "origin not allowed")


def test_defaults_are_loopback_only() -> None:
    assert all(h.startswith(("127.0.0.1", "localhost", "[::1]")) for h in LOOPBACK_HOSTS)
    assert all("127.0.0.1" in o or "localhost" in o or "[::1]" in o for o in LOOPBACK_ORIGINS)

"""Fetching a client's metadata document never reaches a private address (SSRF)."""

from __future__ import annotations

import pytest

from mcplane.oauth.fetch import FetchRefused, SafeFetcher, check_address


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "224.0.0.1",
        "240.0.0.1",
    ],
)
def test_private_addresses_are_refused(address: str) -> None:
    with pytest.raises(FetchRefused) as refused:
        check_address(address)
    assert refused.value.reason == "private_address"


def test_a_public_address_passes() -> None:
    check_address("93.184.215.14")
    check_address("2606:4700::1111")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://127.0.0.1/client.json", "private_address"),
        ("https://localhost/client.json", "private_address"),
        ("https://[::1]:8443/client.json", "private_address"),
        ("https://169.254.169.254/latest/meta-data", "private_address"),
        ("http://93.184.215.14/client.json", "bad_url"),
        ("https://user:pw@example.com/client.json", "bad_url"),
        ("file:///etc/passwd", "bad_url"),
    ],
)
async def test_the_fetcher_refuses_before_connecting(url: str, reason: str) -> None:
    fetcher = SafeFetcher(timeout=2.0)
    try:
        with pytest.raises(FetchRefused) as refused:
            await fetcher.get_json_bytes(url)
    finally:
        await fetcher.aclose()
    assert refused.value.reason == reason

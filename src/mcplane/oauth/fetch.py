"""Fetching a document named by a client (a Client ID Metadata Document) without becoming a
proxy into the private network (SSRF).

* ``https`` only, default port or an explicit one, no user info, no fragment;
* the host is resolved first and **every** address must be public: no private, loopback,
  link-local, shared (CGNAT), multicast, reserved or unspecified address, IPv4-mapped IPv6
  unwrapped first; then the connection goes to the checked address (the URL's host is sent as
  ``Host`` and as the TLS server name, so the certificate is still checked against it), never
  through a second lookup a rebinding DNS server could answer differently;
* redirects are not followed; the body is read up to ``max_bytes`` (more is refused, whatever
  ``Content-Length`` says) within ``timeout`` seconds for the whole exchange.

``allow_loopback`` (tests only) also allows loopback addresses and plain ``http``.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import anyio
import httpx

__all__ = ["FetchRefused", "SafeFetcher", "check_address"]


class FetchRefused(Exception):
    """The document was not fetched; ``reason`` is a stable, safe word."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_address(address: str, *, allow_loopback: bool = False) -> None:
    """``FetchRefused("private_address")`` unless ``address`` is globally routable."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if allow_loopback and ip.is_loopback:
        return
    if not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified:
        raise FetchRefused("private_address")


class SafeFetcher:
    def __init__(
        self,
        *,
        timeout: float = 5.0,
        max_bytes: int = 65_536,
        allow_loopback: bool = False,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.allow_loopback = allow_loopback
        self._client = client or httpx.AsyncClient(follow_redirects=False, trust_env=False)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def get_json_bytes(self, url: str) -> bytes:
        """The body at ``url`` (a 200 with a JSON content type), or :class:`FetchRefused`."""
        with anyio.move_on_after(self.timeout) as scope:
            return await self._get(url)
        assert scope.cancelled_caught
        raise FetchRefused("timeout")

    async def _get(self, url: str) -> bytes:
        parts = urlsplit(url)
        schemes = ("https", "http") if self.allow_loopback else ("https",)
        if parts.scheme not in schemes or not parts.hostname or parts.username or parts.password or parts.fragment:
            raise FetchRefused("bad_url")
        host = parts.hostname
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise FetchRefused("bad_url") from None
        address = await self._resolve(host, port)
        literal = f"[{address}]" if ":" in address else address
        target = parts._replace(netloc=f"{literal}:{port}").geturl()
        host_header = parts.netloc.rsplit("@", 1)[-1]
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        request = self._client.build_request(
            "GET",
            target,
            headers={"host": host_header, "accept": "application/json", "accept-encoding": "identity"},
            extensions=extensions,
            timeout=self.timeout,
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError:
            raise FetchRefused("unreachable") from None
        try:
            if response.status_code != 200:
                raise FetchRefused("not_found" if response.status_code == 404 else "bad_status")
            media = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if media != "application/json" and not media.endswith("+json"):
                raise FetchRefused("not_json")
            if response.headers.get("content-encoding", "identity").lower() != "identity":
                raise FetchRefused("bad_status")  # asked for identity: a compressed body could expand past the cap
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                raise FetchRefused("too_large")
            body = bytearray()
            try:
                async for chunk in response.aiter_raw():
                    body += chunk
                    if len(body) > self.max_bytes:
                        raise FetchRefused("too_large")
            except httpx.HTTPError:
                raise FetchRefused("unreachable") from None
            return bytes(body)
        finally:
            await response.aclose()

    async def _resolve(self, host: str, port: int) -> str:
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            check_address(host, allow_loopback=self.allow_loopback)
            return host
        try:
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            raise FetchRefused("unresolvable") from None
        addresses = [str(info[4][0]) for info in infos]
        if not addresses:
            raise FetchRefused("unresolvable")
        for address in addresses:  # every one: a name mixing public and private addresses is refused
            check_address(address, allow_loopback=self.allow_loopback)
        return addresses[0]

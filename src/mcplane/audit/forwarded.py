"""Which address a call came from: the peer, or what the proxies you trust say they forwarded.

One rule, for every transport that has a peer (Streamable HTTP and WebSocket alike), configured
once as ``http.trusted_proxies`` (addresses and CIDR blocks; empty by default):

- a peer that is not a trusted proxy is the client, whatever ``X-Forwarded-For`` it sends;
- from a trusted proxy, ``X-Forwarded-For`` (every copy of the header, in order, as one
  comma-separated list) is read **from the right**: each hop was appended by the proxy to its
  right, so hops are skipped while they are trusted proxies too, and the first one that is not
  is the client (the right-most untrusted hop). If every hop is trusted, the left-most is it;
- a hop that is not an IP address (``unknown``, a name, junk) ends the walk: the address that
  forwarded it (the last one checked, a trusted proxy) is recorded instead, since nothing
  trustworthy says more. ``1.2.3.4:80`` and ``[2001:db8::1]:80`` are read without their port.

The ASGI server must not rewrite the peer itself: ``mcplane run`` and ``mcplane gateway`` turn
uvicorn's own proxy-header handling off (it trusts 127.0.0.1 by default), so this is the only rule.
Under a server of your own, turn its handling off too (``uvicorn --no-proxy-headers``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["TrustedProxies", "parse_network"]

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_network(entry: str) -> _Network:
    """``10.0.0.7``, ``10.0.0.0/8``, ``fd00::/8``: a trusted-proxy entry (``ValueError`` if it is none)."""
    text = entry.strip()
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{entry!r} is not an IP address or CIDR block (e.g. 10.0.0.7 or 10.0.0.0/8)") from None


def _address(text: str) -> _Address | None:
    """A hop or peer as an IP address (without a port), or ``None``."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        text = text[1:end] if end > 0 else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class TrustedProxies:
    """The proxies whose ``X-Forwarded-For`` is believed (none by default)."""

    __slots__ = ("_everyone", "_networks")

    def __init__(self, networks: Iterable[str] = (), *, everyone: bool = False) -> None:
        self._networks = tuple(parse_network(entry) for entry in networks)
        self._everyone = everyone

    @classmethod
    def everyone(cls) -> TrustedProxies:
        """Every peer and hop trusted: the deprecated ``audit.trust_forwarded: true`` (the left-most hop wins)."""
        return cls(everyone=True)

    def __bool__(self) -> bool:
        return self._everyone or bool(self._networks)

    def __repr__(self) -> str:
        inside = "everyone" if self._everyone else ", ".join(str(network) for network in self._networks)
        return f"TrustedProxies({inside})"

    def trusts(self, address: _Address) -> bool:
        if self._everyone:
            return True
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        return any(address in network or (mapped is not None and mapped in network) for network in self._networks)

    def client_ip(self, peer: str, forwarded_for: str) -> str:
        """The client's address: ``peer`` (the connection's), or a hop of ``forwarded_for`` it vouches for."""
        if not self or not forwarded_for or not peer:
            return peer
        current = _address(peer)
        if current is None or not self.trusts(current):
            return peer
        for hop in reversed(forwarded_for.split(",")):
            if not hop.strip():
                continue  # "a, , b": an empty entry says nothing
            address = _address(hop)
            if address is None:
                break  # not an address: the trusted proxy that passed it on is all we can name
            current = address
            if not self.trusts(address):
                break
        return str(current)

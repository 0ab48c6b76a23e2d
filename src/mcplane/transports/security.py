"""The HTTP tier's guards: Host/Origin allow-lists (DNS-rebinding protection) and size caps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["LOOPBACK_HOSTS", "LOOPBACK_ORIGINS", "HostOriginPolicy"]

LOOPBACK_HOSTS: tuple[str, ...] = ("127.0.0.1", "127.0.0.1:*", "localhost", "localhost:*", "[::1]", "[::1]:*")
LOOPBACK_ORIGINS: tuple[str, ...] = tuple(
    f"{scheme}://{host}{port}"
    for port in (":*", "")
    for scheme in ("http", "https")
    for host in ("127.0.0.1", "localhost", "[::1]")
)


def _matches(value: str, patterns: Sequence[str]) -> bool:
    for pattern in patterns:
        if pattern == "*":
            return True
        if pattern.endswith(":*"):
            # Any port: the value is the name, a colon and digits (never the literal pattern).
            if value.startswith(pattern[:-1]) and value[len(pattern) - 1 :].isdigit():
                return True
        elif value == pattern:
            return True
    return False


@dataclass(frozen=True, slots=True)
class HostOriginPolicy:
    """Allow-lists for the ``Host`` and ``Origin`` headers.

    A pattern is an exact value, ``name:*`` (any port) or ``*`` (anything). ``Origin`` may be
    absent (non-browser clients); when present it must match. An empty ``allowed_hosts``
    disables the Host check (for deployments behind a proxy that already checks it).
    """

    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    allowed_origins: tuple[str, ...] = LOOPBACK_ORIGINS

    def check(self, host: str | None, origin: str | None) -> tuple[int, str] | None:
        """``None`` when allowed, else ``(http_status, reason)``."""
        if self.allowed_hosts and (not host or not _matches(host.lower(), self.allowed_hosts)):
            return 421, "host not allowed"
        if origin is not None and not _matches(origin.lower(), self.allowed_origins):
            return 403, "origin not allowed"
        return None

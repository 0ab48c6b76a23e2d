"""The caller's identity on the way to an upstream, per call, over one kept-open session.

``identity:`` per upstream (:class:`~mcplane.gateway.config.IdentityConfig`):

* ``none`` (default): nothing of the caller travels; the upstream sees the gateway's own ``headers``.
* ``forward``: the caller's ``Authorization`` header, as it came, on each HTTP request of its call.
* ``principal_header``: the authenticated principal's subject in ``X-Mcplane-Principal`` and its
  roles (comma-separated, sorted) in ``X-Mcplane-Roles``; nothing for an anonymous caller.
  Values are percent-encoded outside printable ASCII.
* ``meta``: ``{"subject", "roles", "tenant"}`` under ``_meta["mcplane/principal"]`` (stdio too).
* ``exchange``: the caller's bearer token exchanged (RFC 8693) for one meant for this upstream, sent
  as ``Authorization`` (see :mod:`mcplane.gateway.token_exchange`).

Per-call headers on a shared session: the SDK's dispatcher writes each request to the transport
in the caller's task, so a context variable set for the call is visible there; a thin wrapper
around the transport's write stream puts the call's headers into that message's
``ClientMessageMetadata.headers``, which the Streamable HTTP transport adds to that one POST. No
session, connection or client is opened per call.

A header an upstream trusts is only as safe as the path it travels: identity is refused at
config time for endpoints that are neither ``https://``/``wss://`` nor loopback, and ``forward`` /
``principal_header`` need HTTP endpoints (a WebSocket has no per-message headers; use ``meta``).
``forward`` or ``exchange`` with an ``Authorization`` entry in ``headers`` is refused too: a caller without a
token would otherwise call with the gateway's credentials.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from mcp.shared.message import ClientMessageMetadata, SessionMessage
from mcp_types import JSONRPCRequest

if TYPE_CHECKING:
    from mcplane.context import Context
    from mcplane.gateway.config import IdentityConfig

__all__ = [
    "HEADER_MODES",
    "PRINCIPAL_META_KEY",
    "call_headers",
    "check_identity",
    "identity_headers",
    "identity_meta",
    "stamping",
]

PRINCIPAL_META_KEY = "mcplane/principal"
HEADER_MODES = frozenset({"forward", "principal_header", "exchange"})
"""The modes that stamp headers on each call's HTTP requests (so need HTTP endpoints)."""

call_headers: ContextVar[Mapping[str, str] | None] = ContextVar("mcplane_gateway_call_headers", default=None)
"""HTTP headers for the requests the current task sends upstream (set around one attempt)."""


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_identity(mode: str, endpoints: Sequence[Any], headers: Mapping[str, Any] | None = None) -> None:
    """Refuse an identity mode the endpoints cannot carry safely (a ``ValueError`` for the config)."""
    if mode == "none":
        return
    for endpoint in endpoints:
        kind = endpoint.kind
        if kind == "stdio":
            if mode != "meta":
                raise ValueError(f"identity {mode} needs http(s):// endpoints; stdio can carry identity: meta")
            continue
        if mode in HEADER_MODES and kind != "http":
            raise ValueError(f"identity {mode} needs http(s):// endpoints (a WebSocket has no per-call headers)")
        parts = urlsplit(endpoint.url)
        if parts.scheme not in ("https", "wss") and not _loopback(parts.hostname or ""):
            raise ValueError(f"identity {mode} travels only over https://, wss:// or to a loopback address")
    if mode in ("forward", "exchange") and headers and any(name.lower() == "authorization" for name in headers):
        raise ValueError(f"identity {mode} and an Authorization entry in headers exclude each other")


def _header_value(text: str) -> str:
    return quote(text, safe=" !#$&'()*+,/:;=?@[]~-._")


def identity_headers(config: IdentityConfig, ctx: Context) -> dict[str, str] | None:
    """The headers the caller's identity adds to its call's requests (``None``: none)."""
    if config.mode == "forward":
        headers = ctx.headers
        token = headers.get("authorization") if headers is not None else None
        return {"Authorization": token} if token else None
    if config.mode == "principal_header":
        principal = ctx.principal
        if principal.anonymous:
            return None
        return {
            config.principal_header: _header_value(principal.subject),
            config.roles_header: _header_value(",".join(sorted(principal.roles))),
        }
    return None


def identity_meta(ctx: Context) -> dict[str, Any] | None:
    """``_meta["mcplane/principal"]`` for ``identity: meta`` (``None`` for an anonymous caller)."""
    principal = ctx.principal
    if principal.anonymous:
        return None
    return {"subject": principal.subject, "roles": sorted(principal.roles), "tenant": principal.tenant}


class _StampingWriter:
    """A transport write stream that adds the current call's headers to each request it carries."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    async def send(self, item: SessionMessage, /) -> None:
        headers = call_headers.get()
        if headers and isinstance(item.message, JSONRPCRequest):
            metadata = item.metadata
            if metadata is None:
                item = SessionMessage(item.message, metadata=ClientMessageMetadata(headers=dict(headers)))
            elif isinstance(metadata, ClientMessageMetadata):
                metadata.headers = {**(metadata.headers or {}), **headers}
        await self._inner.send(item)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> _StampingWriter:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        await self.aclose()
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@asynccontextmanager
async def stamping(transport: Any) -> AsyncGenerator[Any]:
    """``transport`` (an SDK client transport) with per-call headers from :data:`call_headers`."""
    async with transport as (read, write):
        yield read, _StampingWriter(write)

"""Serving the authorization server from a starting plane (the ``oauth`` section).

:func:`oauth_server` builds it from the config (keys, the encrypted store over the state
backend, the client registry, the upstream login) and adds its endpoints to the plane's
provider routes, which the HTTP tier serves after the Host/Origin check and before
authentication (every endpoint here authenticates its own callers, or needs no credential).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mcplane.errors import ConfigError

if TYPE_CHECKING:
    from mcplane.backends.registry import Opening
    from mcplane.config import PlaneConfig
    from mcplane.layers import Layers
    from mcplane.oauth.server import AuthorizationServer

__all__ = ["oauth_server"]


def oauth_server(config: PlaneConfig, layers: Layers, backends: Opening) -> AuthorizationServer | None:
    """The authorization server for ``config.oauth`` with its routes mounted; ``None`` without the section."""
    section = config.oauth
    if section is None:
        return None
    from mcplane.backends.registry import STATE
    from mcplane.oauth.clients import Clients
    from mcplane.oauth.fetch import SafeFetcher
    from mcplane.oauth.login import build_login
    from mcplane.oauth.server import AuthorizationServer
    from mcplane.oauth.signing import IssuerKeys
    from mcplane.oauth.store import OAuthStore, StateCipher

    auth = config.auth
    if auth is None or auth.resource is None:  # the config validator guarantees both
        raise ConfigError("oauth needs auth.resource (the canonical URI its tokens are bound to)")
    keys = IssuerKeys([(key.kid, key.private_key.get(), key.status) for key in section.signing_keys])
    store = OAuthStore(
        STATE.build(config.state.backend, backends),
        StateCipher([key.get().encode() for key in section.state_keys]),
        prefix=section.key_prefix,
    )
    documents = section.metadata_documents
    fetcher = SafeFetcher(
        timeout=documents.timeout,
        max_bytes=documents.max_bytes,
        allow_loopback=documents.allow_loopback_for_tests_only,
    )
    server = AuthorizationServer(
        section,
        resource=auth.resource,
        scopes_supported=auth.scopes_supported,
        store=store,
        keys=keys,
        clients=Clients(section, store, fetcher),
        login=build_login(section.login),
    )
    layers.routes.update(server.routes())
    layers.closers.append(server.aclose)
    return server

"""Authentication (JWT bearer, API keys) and per-tool authorization.

::

    AuthConfig ──▶ Authenticator.authenticate(headers) ──▶ Principal | AuthenticationFailed(reason)
                   ├── JWTVerifier (HS256/RS256/ES256; static keys + JWKSCache)
                   ├── APIKeyVerifier (SHA-256 digests, constant-time compare)
                   └── CertificateAuthenticator (mTLS: the verified TLS client certificate)
    AuthASGI(app, authenticator)        HTTP + WebSocket; RFC 9728 metadata; 401 + WWW-Authenticate
    principal_from_env(config)          stdio
    AuthenticateMiddleware              pipeline slot "authenticate"
    AccessPolicy / visible()            rules used by the "authorize" slot and list filtering
"""

from mcplane.auth.api_keys import APIKeyVerifier, generate_api_key, hash_api_key
from mcplane.auth.authenticator import Authenticator, principal_from_env
from mcplane.auth.certificates import CertificateAuthenticator, peer_certificate_pem
from mcplane.auth.claims import principal_from_claims
from mcplane.auth.config import (
    APIKey,
    AuthConfig,
    ClaimsMapping,
    ClientCertificateAuth,
    JWTConfig,
    LocalPrincipal,
    StaticKey,
    StdioAuth,
)
from mcplane.auth.errors import REASONS, AuthenticationFailed, Reason
from mcplane.auth.http import AuthASGI, metadata_url, protected_resource_metadata
from mcplane.auth.jwks import JWKSCache
from mcplane.auth.middleware import SCOPE_KEY, AuthenticateMiddleware, current_principal, principal_of
from mcplane.auth.policy import AccessPolicy, AccessRule, visible
from mcplane.auth.tokens import JWTVerifier

__all__ = [
    "REASONS",
    "SCOPE_KEY",
    "APIKey",
    "APIKeyVerifier",
    "AccessPolicy",
    "AccessRule",
    "AuthASGI",
    "AuthConfig",
    "AuthenticateMiddleware",
    "AuthenticationFailed",
    "Authenticator",
    "CertificateAuthenticator",
    "ClaimsMapping",
    "ClientCertificateAuth",
    "JWKSCache",
    "JWTConfig",
    "JWTVerifier",
    "LocalPrincipal",
    "Reason",
    "StaticKey",
    "StdioAuth",
    "current_principal",
    "generate_api_key",
    "hash_api_key",
    "metadata_url",
    "peer_certificate_pem",
    "principal_from_claims",
    "principal_from_env",
    "principal_of",
    "protected_resource_metadata",
    "visible",
]

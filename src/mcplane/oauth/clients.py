"""Who the clients are: Client ID Metadata Documents and RFC 7591 dynamic registration.

A client id that is an ``https`` URL names its own metadata document, fetched through
:class:`~mcplane.oauth.fetch.SafeFetcher` and cached; it must repeat that URL as its
``client_id`` and may only be a public client (``token_endpoint_auth_method: none``). Any
other client id must have been registered at ``/oauth/register``; its secret (confidential
clients) is kept only as a SHA-256 digest.

Client metadata is hostile input: sizes and counts are capped, every redirect URI must be
``https``, ``http`` on a loopback host (RFC 8252 §7.3) or a private-use scheme with a dot
(RFC 8252 §7.1), with no fragment; names must be printable. Redirect URIs are compared
exactly, as strings.
"""

from __future__ import annotations

import hmac
import secrets
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from mcplane.oauth.config import OAuthServerConfig
from mcplane.oauth.fetch import FetchRefused, SafeFetcher
from mcplane.oauth.store import OAuthStore, digest

__all__ = ["Client", "ClientError", "Clients"]

MAX_URI_CHARS = 2000
MAX_NAME_CHARS = 200
MAX_REGISTRATION_BYTES = 16_384
MAX_CACHED_DOCUMENTS = 1024
AUTH_METHODS = ("none", "client_secret_basic", "client_secret_post")
GRANT_TYPES = ("authorization_code", "refresh_token")
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


class ClientError(Exception):
    """A refused client: ``error`` is the RFC's code, ``description`` safe to show."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    name: str
    redirect_uris: tuple[str, ...]
    auth_method: str = "none"
    secret_digest: str | None = None
    metadata_document: bool = False

    def secret_matches(self, secret: str | None) -> bool:
        if self.secret_digest is None:
            return self.auth_method == "none"
        return secret is not None and hmac.compare_digest(digest(secret), self.secret_digest)

    def record(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "name": self.name,
            "redirect_uris": list(self.redirect_uris),
            "auth_method": self.auth_method,
            "secret_digest": self.secret_digest,
        }


def _printable(value: Any, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ClientError("invalid_client_metadata", f"{what} must be a string of 1 to {limit} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in value):
        raise ClientError("invalid_client_metadata", f"{what} holds control or invisible characters")
    return value


def check_redirect_uri(uri: Any) -> str:
    if not isinstance(uri, str) or not uri or len(uri) > MAX_URI_CHARS or not uri.isprintable() or " " in uri:
        raise ClientError("invalid_redirect_uri", "a redirect URI must be a URL of at most 2000 characters")
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ClientError("invalid_redirect_uri", "a redirect URI must be a valid URL") from None
    if parts.fragment or "#" in uri:
        raise ClientError("invalid_redirect_uri", "a redirect URI must not have a fragment")
    if parts.scheme == "https" and parts.hostname:
        return uri
    if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
        return uri
    if "." in parts.scheme and parts.scheme not in ("javascript", "data", "file") and not parts.netloc:
        return uri  # a private-use scheme (reverse domain name) of a native app
    raise ClientError(
        "invalid_redirect_uri", "a redirect URI must be https, http on a loopback host, or a private-use scheme"
    )


def client_id_is_url(client_id: str) -> bool:
    return client_id.startswith(("https://", "http://"))


class Clients:
    def __init__(
        self,
        config: OAuthServerConfig,
        store: OAuthStore,
        fetcher: SafeFetcher,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.store = store
        self.fetcher = fetcher
        self._clock = clock
        self._documents: dict[str, tuple[Client, float]] = {}

    async def find(self, client_id: str) -> Client:
        """The client, or ``ClientError("invalid_client")``."""
        if not client_id or len(client_id) > MAX_URI_CHARS:
            raise ClientError("invalid_client", "unknown client")
        if client_id_is_url(client_id):
            if not self.config.registration.client_id_metadata_documents:
                raise ClientError("invalid_client", "client ID metadata documents are not accepted here")
            return await self._document(client_id)
        record = await self.store.get("client", client_id)
        if record is None:
            raise ClientError("invalid_client", "unknown client")
        return Client(
            client_id=str(record["client_id"]),
            name=str(record["name"]),
            redirect_uris=tuple(str(uri) for uri in record["redirect_uris"]),
            auth_method=str(record["auth_method"]),
            secret_digest=record.get("secret_digest"),
        )

    # ------------------------------------------------------------------ metadata documents
    def _check_document_url(self, url: str) -> None:
        parts = urlsplit(url)
        allowed = ("https", "http") if self.config.metadata_documents.allow_loopback_for_tests_only else ("https",)
        segments = parts.path.split("/")
        if (
            parts.scheme not in allowed
            or not parts.hostname
            or parts.username is not None
            or parts.password is not None
            or parts.fragment
            or "#" in url
            or parts.path in ("", "/")
            or "." in segments
            or ".." in segments
        ):
            raise ClientError("invalid_client", "a client ID URL must be https with a path and no fragment")

    async def _document(self, url: str) -> Client:
        self._check_document_url(url)
        now = self._clock()
        cached = self._documents.get(url)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            body = await self.fetcher.get_json_bytes(url)
        except FetchRefused as refused:
            raise ClientError(
                "invalid_client", f"the client metadata document was not fetched ({refused.reason})"
            ) from None
        try:
            document: Any = orjson.loads(body)  # nesting past 1024 levels is a JSONDecodeError, not a RecursionError
        except orjson.JSONDecodeError:
            raise ClientError("invalid_client", "the client metadata document is not JSON") from None
        if not isinstance(document, dict):
            raise ClientError("invalid_client", "the client metadata document is not a JSON object")
        meta: dict[str, Any] = document  # pyright: ignore[reportUnknownVariableType]
        if meta.get("client_id") != url:
            raise ClientError("invalid_client", "the client metadata document names another client_id")
        if "client_secret" in meta or meta.get("token_endpoint_auth_method", "none") != "none":
            raise ClientError("invalid_client", "a client ID metadata document client must be public (method none)")
        try:
            client = Client(
                client_id=url,
                name=_printable(meta.get("client_name", urlsplit(url).hostname), "client_name", MAX_NAME_CHARS),
                redirect_uris=self._redirect_uris(meta.get("redirect_uris")),
                metadata_document=True,
            )
        except ClientError as error:
            raise ClientError("invalid_client", error.description) from None
        if len(self._documents) >= MAX_CACHED_DOCUMENTS:
            del self._documents[next(iter(self._documents))]
        self._documents[url] = (client, now + self.config.metadata_documents.cache_ttl)
        return client

    def _redirect_uris(self, value: Any) -> tuple[str, ...]:
        limit = self.config.registration.max_redirect_uris
        if not isinstance(value, list) or not value or len(value) > limit:  # pyright: ignore[reportUnknownArgumentType]
            raise ClientError("invalid_redirect_uri", f"redirect_uris must be a list of 1 to {limit} URIs")
        return tuple(check_redirect_uri(uri) for uri in value)  # pyright: ignore[reportUnknownVariableType]

    # ------------------------------------------------------------------ dynamic registration
    async def register(self, metadata: Mapping[str, Any]) -> dict[str, Any]:
        """RFC 7591 §3.2.1: the registered client's information (the secret only in this answer)."""
        redirect_uris = self._redirect_uris(metadata.get("redirect_uris"))
        method = metadata.get("token_endpoint_auth_method", "client_secret_basic")
        if method not in AUTH_METHODS:
            raise ClientError("invalid_client_metadata", f"token_endpoint_auth_method must be one of {AUTH_METHODS}")
        grants = metadata.get("grant_types", ["authorization_code"])
        if not isinstance(grants, list) or not all(grant in GRANT_TYPES for grant in grants):  # pyright: ignore[reportUnknownVariableType]
            raise ClientError("invalid_client_metadata", "grant_types may be authorization_code and refresh_token")
        responses = metadata.get("response_types", ["code"])
        if responses != ["code"]:
            raise ClientError("invalid_client_metadata", "response_types must be [code]")
        name = _printable(metadata.get("client_name", "unnamed client"), "client_name", MAX_NAME_CHARS)
        client_id = "mcp-" + secrets.token_urlsafe(18)
        secret = secrets.token_urlsafe(32) if method != "none" else None
        client = Client(
            client_id=client_id,
            name=name,
            redirect_uris=redirect_uris,
            auth_method=str(method),
            secret_digest=None if secret is None else digest(secret),
        )
        ttl = self.config.registration.client_ttl
        await self.store.put("client", client_id, client.record(), ttl)
        issued = int(time.time())
        answer: dict[str, Any] = {
            "client_id": client_id,
            "client_id_issued_at": issued,
            "client_name": name,
            "redirect_uris": list(redirect_uris),
            "token_endpoint_auth_method": method,
            "grant_types": list(grants),  # pyright: ignore[reportUnknownArgumentType]
            "response_types": ["code"],
        }
        if secret is not None:
            answer["client_secret"] = secret
            answer["client_secret_expires_at"] = issued + int(ttl)  # forgotten then: register again
        return answer

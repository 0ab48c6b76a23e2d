"""Logging in to an OAuth-protected server: the official SDK's OAuth client, with a file token store.

::

    from mcplane.client.oauth import FileTokenStore, oauth

    store = FileTokenStore("~/.config/agent/tokens.json")       # created 0600
    auth = oauth("https://mcp.example.com/mcp", store=store, redirect_uri="http://127.0.0.1:8765/callback",
                 open_url=webbrowser_open, wait_for_redirect=receiver.wait)
    async with Client("https://mcp.example.com/mcp", auth=auth) as client: ...

The SDK's :class:`mcp.client.auth.OAuthClientProvider` does the protocol (discovery from the
401, registration or a Client ID Metadata Document, PKCE S256, the ``state`` and RFC 9207
``iss`` checks, the token exchange and refreshes); this module gives it somewhere safe to keep
tokens, and turns the redirect URL the browser lands on into what it expects.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
from mcp.client.auth import OAuthClientProvider
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from mcplane.errors import Unauthenticated

__all__ = ["FileTokenStore", "oauth", "redirect_result"]


class FileTokenStore:
    """The SDK's ``TokenStorage`` in one JSON file, readable by its owner only (0600).

    Each write goes to a new 0600 file in the same directory, then replaces the old one, so a
    crash never leaves a half-written file and the tokens are never readable by others, even
    for a moment. One store per server (the registration is the server's).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()

    def _read(self) -> dict[str, Any]:
        try:
            data: Any = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}  # pyright: ignore[reportUnknownVariableType]

    def _write(self, key: str, value: dict[str, Any]) -> None:
        data = {**self._read(), key: value}
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".tokens-")  # mkstemp creates 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(data, file)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    async def get_tokens(self) -> OAuthToken | None:
        data = (await anyio.to_thread.run_sync(self._read)).get("tokens")
        return OAuthToken.model_validate(data) if data else None

    async def set_tokens(self, tokens: OAuthToken) -> None:
        await anyio.to_thread.run_sync(self._write, "tokens", tokens.model_dump(mode="json", exclude_none=True))

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        data = (await anyio.to_thread.run_sync(self._read)).get("client")
        return OAuthClientInformationFull.model_validate(data) if data else None

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        await anyio.to_thread.run_sync(self._write, "client", client_info.model_dump(mode="json", exclude_none=True))


def redirect_result(url: str) -> AuthorizationCodeResult:
    """The code, state and ``iss`` of the URL the authorization server redirected the browser to;
    ``Unauthenticated`` when it carries an error (``access_denied``, ...) instead."""
    query = {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}
    if "code" not in query:
        raise Unauthenticated(
            f"the authorization server refused the login: {query.get('error', 'no code')}",
            details={"reason": query.get("error", "no_code")},
        )
    return AuthorizationCodeResult(code=query["code"], state=query.get("state"), iss=query.get("iss"))


def oauth(
    server_url: str,
    *,
    store: Any,
    redirect_uri: str,
    open_url: Callable[[str], Awaitable[None]],
    wait_for_redirect: Callable[[], Awaitable[str]],
    client_name: str = "mcplane client",
    scope: str | None = None,
    client_metadata_url: str | None = None,
) -> OAuthClientProvider:
    """The ``auth=`` of :class:`~mcplane.client.Client` for an OAuth-protected server.

    ``open_url`` sends the user to the authorization URL (``webbrowser.open``, or printing it);
    ``wait_for_redirect`` returns the URL the browser was sent back to at ``redirect_uri``.
    ``client_metadata_url``: an ``https`` URL serving this client's metadata document, used
    instead of dynamic registration where the server accepts them. ``scope``: asked for only when
    the server's challenge and metadata name none (the SDK prefers theirs). ``store``: the SDK's
    ``TokenStorage`` (a :class:`FileTokenStore`).
    """

    async def callback() -> AuthorizationCodeResult:
        return redirect_result(await wait_for_redirect())

    metadata = OAuthClientMetadata.model_validate(
        {"redirect_uris": [redirect_uri], "client_name": client_name, "token_endpoint_auth_method": "none"}
        | ({"scope": scope} if scope else {})
    )
    return OAuthClientProvider(
        server_url,
        metadata,
        store,
        redirect_handler=open_url,
        callback_handler=callback,
        client_metadata_url=client_metadata_url,
    )

"""The two pages a person sees: the consent page and the error page.

Every value shown is HTML-escaped (a client's name is the client's to choose); the pages load
nothing, run no script, cannot be framed (``frame-ancestors 'none'``: no clickjacking of the
Allow button) and are never cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

__all__ = ["PAGE_HEADERS", "consent_page", "error_page"]

PAGE_HEADERS = [
    (b"content-type", b"text/html; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"pragma", b"no-cache"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),  # no-referrer would make browsers send `Origin: null` with the form
    (
        b"content-security-policy",
        # No form-action: browsers apply it to the redirect that follows the form (to the provider).
        b"default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
    ),
]

_STYLE = "body{font-family:sans-serif;max-width:36em;margin:3em auto;padding:0 1em}code{word-break:break-all}"


def _page(title: str, body: str) -> bytes:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>{body}</body></html>"
    ).encode()


def consent_page(
    *,
    action: str,
    client_name: str,
    client_id: str,
    redirect_uri: str,
    resource: str,
    scopes: Sequence[str],
    request_id: str,
    csrf: str,
) -> bytes:
    scope_items = "".join(f"<li><code>{escape(scope)}</code></li>" for scope in scopes) or "<li>(no scopes)</li>"
    body = (
        f"<h1>Allow {escape(client_name)}?</h1>"
        f"<p><strong>{escape(client_name)}</strong> (<code>{escape(client_id)}</code>) asks to use "
        f"<code>{escape(resource)}</code> on your behalf.</p>"
        f"<p>It asks for:</p><ul>{scope_items}</ul>"
        f"<p>After you sign in you will be sent back to <code>{escape(redirect_uri)}</code>.</p>"
        f'<form method=post action="{escape(action)}">'
        f'<input type=hidden name=request value="{escape(request_id)}">'
        f'<input type=hidden name=csrf value="{escape(csrf)}">'
        "<button type=submit name=decision value=allow>Allow and sign in</button> "
        "<button type=submit name=decision value=deny>Deny</button></form>"
    )
    return _page(f"Allow {client_name}?", body)


def error_page(error: str, description: str) -> bytes:
    body = f"<h1>Sign-in cannot continue</h1><p><code>{escape(error)}</code>: {escape(description)}</p>"
    return _page("Sign-in cannot continue", body)

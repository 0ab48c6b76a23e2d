"""mcplane as the OAuth authorization server MCP clients log in through (docs/oauth.md).

::

    config.py    the ``oauth`` section (issuer, keys, registration, lifetimes, ``login``)
    mount.py     builds the server from a starting plane's config and adds its routes
    server.py    the endpoints: metadata, authorize + consent, callback, token, revoke, register, JWKS
    clients.py   Client ID Metadata Documents and RFC 7591 registration
    fetch.py     fetching a client's metadata document without SSRF
    signing.py   the ES256 access tokens and the JWKS (rotation with overlap)
    store.py     records in the state backend, AES-GCM sealed, taken once
    pages.py     the consent and error pages
    login.py     the user's login, delegated to the company's OpenID provider (presets.py, login_*.py)
"""

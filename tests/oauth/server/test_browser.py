"""A real browser (Debian's Chromium, driven by playwright-core) through the consent page and the
identity provider's sign-in: the cookie, the form and the redirects work as browsers enforce them
(SameSite, the page's Content-Security-Policy), not only as an HTTP client follows them."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from urllib.parse import urlencode

import anyio
import httpx

from tests.conftest import REPO_ROOT
from tests.interop.conftest import NODE22, node_env, require
from tests.oauth.conftest import pkce_pair
from tests.oauth.server.conftest import Plant, query_of

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "browser_login.mjs"
PLAYWRIGHT = REPO_ROOT / ".tools" / "playwright" / "node_modules"
CHROMIUM = Path("/usr/bin/chromium")
REDIRECT_URI = "http://127.0.0.1:9/callback"


async def test_a_browser_signs_in_and_the_code_redeems(authorization_server: Plant) -> None:
    node = require(NODE22, "Node 22")
    modules = require(PLAYWRIGHT / "playwright-core", "playwright-core").parent
    require(CHROMIUM, "Chromium")
    base = authorization_server.server.base
    verifier, challenge = pkce_pair()
    async with httpx.AsyncClient(timeout=10) as http:
        client_id = (
            await http.post(
                f"{base}/oauth/register", json={"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"}
            )
        ).json()["client_id"]
        state = secrets.token_urlsafe(16)
        query = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        with anyio.fail_after(90):
            done = await anyio.run_process(
                [
                    str(node),
                    str(DRIVER),
                    str(modules),
                    f"{base}/oauth/authorize?{urlencode(query)}",
                    REDIRECT_URI,
                    "bob",
                ],
                cwd=REPO_ROOT,
                env=node_env(),
                check=False,
            )
        assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
        back = query_of(json.loads(done.stdout)["url"])
        assert back["state"] == state
        assert back["iss"] == base
        tokens = await http.post(
            f"{base}/oauth/token",
            data={
                "grant_type": "authorization_code",
                "client_id": client_id,
                "code": back["code"],
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
            },
        )
    assert tokens.status_code == 200, tokens.text

"""docs/authentication.md, checked: the documented config loads, the minting snippet's digest
lets its key in through the real HTTP auth tier, and a request without it gets the documented 401."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import httpx
import yaml
from starlette.types import Receive, Scope, Send
from tests.conftest import REPO_ROOT

from mcplane.auth import AuthASGI, AuthConfig, Authenticator, current_principal
from mcplane.context import Principal

DOC = (REPO_ROOT / "docs" / "authentication.md").read_text(encoding="utf-8")


def _block(marker: str, language: str) -> str:
    return DOC.split(f"<!-- {marker} -->\n```{language}\n", 1)[1].split("```", 1)[0]


class Inner:
    def __init__(self) -> None:
        self.principals: list[Principal | None] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.principals.append(current_principal.get())
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"inner"})


async def test_the_minted_key_gets_in_and_nothing_else_does() -> None:
    namespace: dict[str, Any] = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(_block("auth-mint", "python"), "authentication.md", "exec"), namespace)
    key, digest = namespace["key"], namespace["digest"]
    assert printed.getvalue().strip() == digest
    assert digest.startswith("sha256:")

    raw = _block("auth-config", "yaml").replace("sha256:<the digest printed below>", digest)
    config = AuthConfig.model_validate(yaml.safe_load(raw)["auth"])
    inner = Inner()
    app = AuthASGI(inner, Authenticator(config))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        refused = await client.post("/mcp", content=b"{}")
        allowed = await client.post("/mcp", content=b"{}", headers={"x-api-key": key})
        wrong = await client.post(
            "/mcp", content=b"{}", headers={"x-api-key": key[:-1] + ("A" if key[-1] != "A" else "B")}
        )
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith('Bearer resource_metadata="')
    assert allowed.status_code == 200
    assert wrong.status_code == 401
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
    (principal,) = inner.principals
    assert principal is not None
    assert (principal.subject, tuple(principal.roles)) == ("ci-bot", ("deployer",))


def test_every_refusal_reason_is_documented() -> None:
    from mcplane.auth import REASONS

    for reason in REASONS:
        assert f"`{reason}`" in DOC

"""``mcplane.Client`` logs in through mcplane's authorization server with ``auth=oauth(...)``
(docs/oauth.md's snippet, run as written), keeping its tokens in a 0600 file."""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Any

from tests.oauth.server.conftest import Browser, Plant

GUIDE = (Path(__file__).resolve().parents[3] / "docs" / "oauth.md").read_text(encoding="utf-8")


def _snippet() -> Any:
    code = re.findall(r"```python\n(.*?)```", GUIDE, flags=re.S)[0]
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    return namespace["whoami"]


async def test_the_client_logs_in_once_and_keeps_its_tokens_private(
    authorization_server: Plant, tmp_path: Path
) -> None:
    whoami = _snippet()
    store = tmp_path / "state" / "tokens.json"
    browser = Browser(authorization_server.idp, user="alice")
    opened: list[str] = []

    async def open_url(url: str) -> None:
        opened.append(url)

    async def wait_for_redirect() -> str:
        return await browser.authorize(opened[-1])

    try:
        first = await whoami(authorization_server.server.url, store, open_url, wait_for_redirect)
        second = await whoami(authorization_server.server.url, store, open_url, wait_for_redirect)
    finally:
        await browser.aclose()
    assert first.content[0].text == "alice roles=['admin'] scopes=['tools.read', 'tools.write']"
    assert second.content[0].text == first.content[0].text
    assert len(opened) == 1, "the second run used the stored tokens"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert not [path for path in store.parent.iterdir() if path.name != "tokens.json"]

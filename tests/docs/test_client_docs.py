"""docs/client.md, run: each Python snippet against a real server (plain HTTP, or HTTPS with a
client certificate for the TLS one), the ``mcplane call`` lines, and the TLS options table."""

from __future__ import annotations

import inspect
import re
import shlex
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from tests.conftest import QUICKSTART, REPO_ROOT, ServerProcess, mcplane_command, start_server
from tests.test_tls import CA, start_tls_server, trusting

from mcplane.client import Client
from mcplane.tls import load_certificate

DOC = (REPO_ROOT / "docs" / "client.md").read_text(encoding="utf-8")


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC, flags=re.S)


async def run_snippet(snippet: str, **names: Any) -> tuple[dict[str, Any], list[str]]:
    """Run a snippet as the body of an ``async def`` (as an agent's code would be); its locals
    and what it printed."""
    printed: list[str] = []
    namespace: dict[str, Any] = {"print": lambda *a: printed.append(" ".join(map(str, a))), **names}  # pyright: ignore[reportUnknownLambdaType, reportUnknownArgumentType]
    body = textwrap.indent(snippet, "    ")
    exec(compile(f"async def _snippet():\n{body}\n    return locals()\n", "client.md", "exec"), namespace)
    with anyio.fail_after(30):
        found: dict[str, Any] = await namespace["_snippet"]()
    return found, printed


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(QUICKSTART, tmp_path=tmp_path_factory.mktemp("client-docs"))
    yield server
    server.stop()


async def test_the_first_snippet(plain: ServerProcess) -> None:
    found, printed = await run_snippet(blocks("python")[0].replace("8000", str(plain.port)))
    assert found["result"].structured_content == {"result": 3}
    assert printed[0].startswith("{'result': 3} ")
    assert found["budget"].remaining < 10_000


async def test_the_typed_errors_snippet(plain: ServerProcess) -> None:
    snippet = next(block for block in blocks("python") if "except NotFound" in block)
    async with Client(plain.url) as client:
        _, printed = await run_snippet(snippet, client=client)
    code, retryable, message = printed[0].split(" ", 2)
    assert (code, retryable) == ("not_found", "False")
    assert "no_such_tool" in message


@pytest.fixture(scope="module")
def mtls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """An HTTPS server requiring a client certificate; a folder holding the snippet's files."""
    tmp = tmp_path_factory.mktemp("client-docs-tls")
    ca = CA("client docs CA")
    (tmp / "ca.pem").write_bytes(ca.pem)
    agent = ca.issue("agent", client=True)
    agent.write(tmp, "agent")  # agent.pem, agent.key
    health = trusting(ca)
    load_certificate(health, agent.cert_pem, agent.key_pem)
    server = start_tls_server(QUICKSTART, ca, tmp, "--tls-client-ca", str(tmp / "ca.pem"), health_context=health)
    yield server.url, tmp
    server.stop()


async def test_the_tls_snippet(mtls: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    url, folder = mtls
    monkeypatch.chdir(folder)  # the snippet names ca.pem, agent.pem and agent.key
    snippet = next(block for block in blocks("python") if 'ca="ca.pem"' in block)
    found, _ = await run_snippet(snippet.replace("https://mcp.example.com/mcp", url), Client=Client)
    assert found["result"].structured_content == {"result": 3}


def test_the_tls_options_are_the_clients() -> None:
    table = DOC.split("| Option | Meaning |", 1)[1].split("\n\n", 1)[0]
    options = set(re.findall(r"`(\w+)=", table))
    assert options == {"ca", "cert", "key", "verify", "tls"}
    assert options <= set(inspect.signature(Client).parameters)


def test_the_call_commands(plain: ServerProcess, mtls: tuple[str, Path]) -> None:
    url, folder = mtls
    lines = [line for line in blocks("bash")[0].splitlines() if line.startswith("mcplane call")]
    assert len(lines) == 2
    for line in lines:
        line = line.replace("http://127.0.0.1:8000/mcp", plain.url).replace("https://mcp.example.com/mcp", url)
        done = subprocess.run(
            mcplane_command(*shlex.split(line)[1:]), capture_output=True, text=True, timeout=60, cwd=folder
        )
        assert done.returncode == 0, (line, done.stderr)
        assert '"result": 3' in done.stdout

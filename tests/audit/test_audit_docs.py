"""docs/audit.md, run: its commands work as shown, and the refusal it quotes is what mcplane says."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import yaml
from mcp_types import CallToolResult, TextContent

from mcplane import Context, Forbidden, Principal
from mcplane.audit import CheckpointOptions, JsonlSink, verify_lines
from mcplane.config import PlaneConfig
from mcplane.errors import ConfigError
from mcplane.pipeline import Call
from mcplane.stack import build_pipeline
from tests.conftest import REPO_ROOT

DOC = (REPO_ROOT / "docs" / "audit.md").read_text(encoding="utf-8")


def _blocks(lang: str) -> list[list[str]]:
    return [
        [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
        for block in re.findall(rf"```{lang}\n(.*?)```", DOC, flags=re.S)
    ]


def _run(line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    words = shlex.split(line)
    if words[0] == ".venv/bin/mcplane":
        words = [sys.executable, "-m", "mcplane.cli", *words[1:]]
    return subprocess.run(words, cwd=cwd, capture_output=True, text=True, timeout=60)


async def _log(path: Path, count: int, **options: object) -> None:
    sink = JsonlSink(path, **options)  # type: ignore[arg-type]
    for i in range(count):
        await sink.append([{"i": i, "time": f"2026-05-01T00:00:{i:02d}.000Z"}])
    await sink.aclose()


async def test_the_export_and_verify_commands_run_as_shown(tmp_path: Path) -> None:
    [commands] = [block for block in _blocks("bash") if any("audit export" in line for line in block)]
    await _log(tmp_path / "audit.jsonl", 5)
    for line in commands:
        done = _run(line, tmp_path)
        assert done.returncode == 0, f"{line}\n{done.stdout}{done.stderr}"
    assert (tmp_path / "audit-export.tar.gz").exists()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_a_key_made_as_shown_signs_and_its_public_half_verifies(tmp_path: Path) -> None:
    [commands] = [block for block in _blocks("bash") if any("openssl" in line for line in block)]
    for line in commands:
        done = _run(line, tmp_path)
        assert done.returncode == 0, done.stderr
    key = (tmp_path / "audit-key.pem").read_text()
    PlaneConfig.model_validate({"audit": {"checkpoint_key": key}})  # the config takes it
    await _log(tmp_path / "audit.jsonl", 3, checkpoints=CheckpointOptions(key=key))
    done = _run(".venv/bin/mcplane audit verify audit.jsonl --public-key audit-key.pub", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


async def test_the_quoted_refusal_is_what_mcplane_says(tmp_path: Path) -> None:
    [quoted] = [line for block in _blocks("text") for line in block if line.startswith("mcplane: error:")]
    path = tmp_path / "audit.jsonl"
    await _log(path, 6)
    path.write_bytes(b"".join(line + b"\n" for line in path.read_bytes().split(b"\n")[:-2]))
    config = PlaneConfig.model_validate({"audit": {"path": str(path)}})
    with pytest.raises(ConfigError) as refused:
        build_pipeline(config, {})
    said = f"mcplane: error: {refused.value.message}"
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    assert re.sub(stamp, "T", said) == re.sub(stamp, "T", quoted)


async def test_one_record_per_call_as_the_snippet_configures_it(tmp_path: Path) -> None:
    [snippet] = [block for block in re.findall(r"```yaml\n(.*?)```", DOC, flags=re.S) if "pending: false" in block]
    tree = yaml.safe_load(snippet)
    tree["audit"]["path"] = str(tmp_path / "audit.jsonl")
    layers = build_pipeline(PlaneConfig.model_validate(tree), {})

    async def provider(call: Call) -> CallToolResult:
        if call.arguments.get("fail"):
            raise Forbidden("not this one")
        return CallToolResult(content=[TextContent(type="text", text="done")])

    chain = layers.pipeline.compose(provider)
    try:
        for fail in (False, True):
            await chain(Call("tool", "pay", {"fail": fail}, Context(principal=Principal("alice"))))
    finally:
        await layers.aclose()
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert verify_lines(lines).ok
    records = [orjson.loads(line) for line in lines]
    assert [(r["status"], r["error_code"]) for r in records] == [("ok", None), ("error", "forbidden")]
    assert records[0]["call_id"] != records[1]["call_id"]

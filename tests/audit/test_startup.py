"""``mcplane run`` on a log that lost records: it refuses to start (the default) or starts not ready,
as ``audit.on_broken_chain`` says; a clean stop leaves a log that verifies."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import orjson

from tests.audit.conftest import HOSTILE_APP, AuditedServer, free_port, start_audited_server
from tests.conftest import REPO_ROOT, START_TIMEOUT, mcplane_command


def _serve_and_stop(tmp_path: Path, calls: int = 3) -> AuditedServer:
    audited = start_audited_server(tmp_path)
    for i in range(calls):
        audited.audited(lambda i=i: audited.post("tools/call", {"name": "add", "arguments": {"a": i, "b": 1}}))
    assert audited.server.stop() == 0
    return audited


def _cut(path: Path, records: int) -> None:
    lines = path.read_bytes().split(b"\n")[:-1]
    path.write_bytes(b"".join(line + b"\n" for line in lines[:-records]))


def _run_until_exit(audit_file: Path, transport: str) -> subprocess.CompletedProcess[str]:
    argv = ["run", str(HOSTILE_APP), "--transport", transport]
    if transport == "http":
        argv += ["--port", str(free_port())]
    return subprocess.run(
        mcplane_command(*argv),
        cwd=REPO_ROOT,
        env={**os.environ, "MCPLANE__AUDIT__PATH": str(audit_file)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
    )


def test_a_clean_stop_leaves_a_log_that_verifies_with_its_shutdown_checkpoint(tmp_path: Path) -> None:
    audited = _serve_and_stop(tmp_path)
    audited.verify_cli()
    checkpoints = (tmp_path / "audit.jsonl.checkpoints").read_bytes().split(b"\n")[:-1]
    last = orjson.loads(checkpoints[-1])
    assert (last["reason"], last["seq"]) == ("shutdown", 6)


def test_a_restart_on_a_cut_log_is_refused(tmp_path: Path) -> None:
    audited = _serve_and_stop(tmp_path)
    _cut(audited.audit_file, 1)
    done = _run_until_exit(audited.audit_file, "stdio")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("mcplane: error: audit chain broken, refusing to start (audit.on_broken_chain: refuse): ")
    assert "audit.jsonl ends at record 5, but the checkpoint of " in last
    assert "record 6 missing (truncated or deleted)" in last
    _cut(audited.audit_file, 2)
    done = _run_until_exit(audited.audit_file, "http")
    assert done.returncode != 0
    assert "startup failed: audit chain broken, refusing to start" in done.stderr
    assert "audit.jsonl ends at record 3, but the checkpoint of " in done.stderr
    assert len(audited.records()) == 3  # nothing was appended


def test_a_restart_on_a_cut_log_is_not_ready_when_so_configured_until_it_is_repaired(tmp_path: Path) -> None:
    audited = _serve_and_stop(tmp_path)
    whole = audited.audit_file.read_bytes()
    _cut(audited.audit_file, 3)
    restarted = start_audited_server(tmp_path, MCPLANE__AUDIT__ON_BROKEN_CHAIN="not_ready")
    try:
        ready = httpx.get(f"{restarted.server.base}/ready", timeout=10)
        assert ready.status_code == 503
        reason = ready.json()["checks"]["audit"]
        assert reason.startswith("audit chain broken: audit.jsonl ends at record 3, but the checkpoint of ")
        refused = restarted.post("tools/call", {"name": "add", "arguments": {"a": 1, "b": 1}})
        assert "dependency_unavailable" in refused.text
        assert len(restarted.records()) == 3  # the call was refused: nothing appended to the cut log
        restarted.audit_file.write_bytes(whole)  # restored from a backup
        assert httpx.get(f"{restarted.server.base}/ready", timeout=10).status_code == 200
        restarted.audited(lambda: restarted.post("tools/call", {"name": "add", "arguments": {"a": 1, "b": 1}}))
    finally:
        restarted.server.stop()
    restarted.verify_cli()

"""``mcplane audit export``: a tar.gz of the segments and checkpoints with a SHA-256 manifest, which
``mcplane audit verify`` checks member by member, then as a log."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

import orjson
import pytest

from mcplane.audit import JsonlSink
from tests.conftest import mcplane_command


async def _log(directory: Path, count: int = 30) -> Path:
    path = directory / "audit.jsonl"
    sink = JsonlSink(path, rotate_bytes=900)
    for i in range(count):
        await sink.append([{"i": i, "time": f"2026-04-01T00:00:{i:02d}.000Z"}])
    await sink.aclose()
    return path


def _mcplane(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(mcplane_command("audit", *argv), capture_output=True, text=True, timeout=60)


def _members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def _rewrite(archive: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture
async def archive(tmp_path: Path) -> Path:
    log = await _log(tmp_path / "logs")
    out = tmp_path / "audit-2026-04.tar.gz"
    done = _mcplane("export", str(log), "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"wrote {out}: 30 records in ")
    return out


def test_the_archive_holds_every_segment_its_checkpoints_and_a_manifest(archive: Path, tmp_path: Path) -> None:
    members = _members(archive)
    manifest = orjson.loads(members.pop("manifest.json"))
    logs = tmp_path / "logs"
    on_disk = [*sorted(p.name for p in logs.iterdir() if p.name.startswith("audit-")), "audit.jsonl"]
    assert [entry["name"] for entry in manifest["segments"]] == on_disk
    for entry in manifest["segments"]:
        data = members.pop(f"segments/{entry['name']}")
        assert data == (logs / entry["name"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    checkpoints = members.pop("audit.jsonl.checkpoints")
    assert manifest["checkpoints"]["sha256"] == hashlib.sha256(checkpoints).hexdigest()
    assert members == {}  # no key: the manifest holds only its public half
    assert manifest["latest_checkpoint"] == orjson.loads(checkpoints.split(b"\n")[-2])
    assert manifest["public_keys"][0].startswith("ed25519:")
    assert (manifest["records"], manifest["head"]["seq"], manifest["verified"]["ok"]) == (30, 30, True)


def test_verify_checks_an_archive(archive: Path) -> None:
    done = _mcplane("verify", str(archive))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok: 30 records (seq 1-30, 2026-04-01T00:00:00.000Z to 2026-04-01T00:00:29.000Z")
    assert "signed by key" in done.stdout
    assert "from the archive's manifest" in done.stdout


def test_an_edited_member_is_caught(archive: Path) -> None:
    members = _members(archive)
    name = next(n for n in members if n.startswith("segments/audit-"))
    members[name] = members[name].replace(b'"i":3,', b'"i":4,')
    _rewrite(archive, members)
    done = _mcplane("verify", str(archive))
    assert done.returncode == 1
    assert f"{name}: SHA-256 differs from the manifest (edited)" in done.stdout
    assert "hash mismatch (edited)" in done.stdout


def test_a_removed_or_added_member_is_caught(archive: Path) -> None:
    members = _members(archive)
    name = [n for n in members if n.startswith("segments/audit-")][1]
    del members[name]
    members["segments/extra.jsonl"] = b"{}\n"
    _rewrite(archive, members)
    done = _mcplane("verify", str(archive))
    assert done.returncode == 1
    assert f"{name}: in the manifest but not in the archive (deleted)" in done.stdout
    assert "segments/extra.jsonl: not in the manifest (inserted)" in done.stdout


def test_a_cut_tail_travels_into_the_archive_and_is_caught(archive: Path) -> None:
    members = _members(archive)
    manifest = orjson.loads(members["manifest.json"])
    active = "segments/audit.jsonl"
    members[active] = b"".join(line + b"\n" for line in members[active].split(b"\n")[:-2])
    entry = next(e for e in manifest["segments"] if e["name"] == "audit.jsonl")
    entry["sha256"] = hashlib.sha256(members[active]).hexdigest()  # the manifest forged to match
    members["manifest.json"] = orjson.dumps(manifest)
    _rewrite(archive, members)
    done = _mcplane("verify", str(archive))
    assert done.returncode == 1
    assert "truncated: the log ends at record 29, but the checkpoint of " in done.stdout
    assert "the archive's last record is 29, but its manifest says 30" in done.stdout


async def test_an_export_never_overwrites_and_archives_a_broken_log_as_it_is(tmp_path: Path) -> None:
    log = await _log(tmp_path / "logs")
    out = tmp_path / "a.tar.gz"
    out.write_bytes(b"keep")
    done = _mcplane("export", str(log), "--out", str(out))
    assert done.returncode == 2
    assert "exists already" in done.stderr
    assert out.read_bytes() == b"keep"
    log.write_bytes(b"".join(line + b"\n" for line in log.read_bytes().split(b"\n")[:-2]))
    broken = tmp_path / "b.tar.gz"
    done = _mcplane("export", str(log), "--out", str(broken))
    assert done.returncode == 1
    assert "the log does not verify (the archive holds it as it is)" in done.stdout
    manifest = orjson.loads(_members(broken)["manifest.json"])
    assert manifest["verified"]["ok"] is False
    assert "truncated" in manifest["verified"]["report"]

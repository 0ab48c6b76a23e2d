"""``mcplane audit export``: a JSONL log's segments and checkpoints in one archive, for retention.

The archive is a gzip-compressed tar (``.tar.gz``) holding::

    manifest.json                  what is in it (below)
    segments/<name>                each segment, byte for byte (the active one up to its last full line)
    <log>.checkpoints              the checkpoint store, byte for byte

``manifest.json`` names each segment with its SHA-256, size, records, first and last ``seq`` and
``time``; the log's head; the checkpoint store's SHA-256; the latest checkpoint; the public keys
the checkpoints are signed with (never a private key); and the verification the export ran.
``mcplane audit verify ARCHIVE`` checks every member against the manifest (a member edited,
missing or added), then the chain and checkpoints as for the log itself.

The archive is written beside its final name and renamed into place, and never overwrites a file.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mcplane.audit.checkpoint import parse_checkpoint, utc_text
from mcplane.audit.completeness import CompletenessReport, LogSource, Segment, check, store_keys, store_lines
from mcplane.audit.keys import load_public_key, public_text
from mcplane.audit.segments import LogFiles, discover
from mcplane.audit.verify import parse_row

__all__ = ["ExportResult", "archive_source", "export_log", "is_archive"]

FORMAT = "mcplane-audit-export"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ExportResult:
    path: Path
    manifest: dict[str, Any]
    report: CompletenessReport


def is_archive(path: str | Path) -> bool:
    path = Path(path)
    if not path.is_file():
        return False
    with path.open("rb") as handle:
        if handle.read(2) != b"\x1f\x8b":  # gzip
            return False
    return tarfile.is_tarfile(path)


def _segment_entry(name: str, data: bytes) -> dict[str, Any]:
    lines = data.split(b"\n")[:-1]
    first = parse_row(lines[0]) if lines else None
    last = parse_row(lines[-1]) if lines else None
    return {
        "name": name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "records": len(lines),
        "first_seq": first.seq if first else None,
        "last_seq": last.seq if last else None,
        "first_time": first.time if first else None,
        "last_time": last.time if last else None,
    }


def export_log(
    target: str | Path,
    out: str | Path,
    *,
    checkpoints: str | Path | None = None,
    trusted: Sequence[tuple[Ed25519PublicKey, str]] | None = None,
) -> ExportResult:
    """Write the archive of the log at ``target`` (its active segment's path, or its directory) to ``out``.

    ``trusted``: the keys to check the checkpoints with (default: the key generated beside them)."""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists already: an export never overwrites a file")
    files = discover(target)
    store = Path(checkpoints) if checkpoints is not None else files.checkpoints_path
    segments: list[tuple[str, bytes]] = []
    for path in files.files():
        data = path.read_bytes()
        segments.append((path.name, data[: data.rfind(b"\n") + 1]))  # a record being written is left for later
    if not segments:
        raise FileNotFoundError(f"no audit log at {target}")
    store_data = store.read_bytes() if store.exists() else None
    sealed = {path.name: first for first, path in files.sealed()}
    lines, partial = store_lines(store_data) if store_data is not None else (None, False)
    source = LogSource(
        f"{files.name} in {files.directory}",
        [Segment(name, data.split(b"\n")[:-1], sealed.get(name)) for name, data in segments],
        lines,
        store.name,
        keys=store_keys(store),
        partial_checkpoint=partial,
    )
    report = check(source, trusted)
    latest = None
    for line in reversed(source.checkpoints or []):
        if (latest := parse_checkpoint(line)) is not None:
            break
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": 1,
        "created": utc_text(time.time()),
        "log": files.name,
        "segments": [_segment_entry(name, data) for name, data in segments],
        "records": report.chain.count,
        "head": {"seq": report.chain.head_seq, "hash": report.chain.head_hash},
        "checkpoints": (
            {"name": store.name, "sha256": hashlib.sha256(store_data).hexdigest(), "bytes": len(store_data)}
            if store_data is not None
            else None
        ),
        "latest_checkpoint": latest,
        "public_keys": [public_text(key) for key, _ in (trusted if trusted is not None else source.keys)],
        "verified": {"ok": report.ok, "report": report.render()},
    }
    members = [(MANIFEST, orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")]
    members += [(f"segments/{name}", data) for name, data in segments]
    if store_data is not None:
        members.append((store.name, store_data))
    _write_archive(out, members)
    return ExportResult(out, manifest, report)


def _write_archive(out: Path, members: list[tuple[str, bytes]]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as zipped:
            with tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
                now = int(time.time())
                for name, data in members:
                    info = tarfile.TarInfo(name)
                    info.size, info.mtime, info.mode = len(data), now, 0o600
                    tar.addfile(info, io.BytesIO(data))
            zipped.flush()
        with temporary.open("rb") as written:
            os.fsync(written.fileno())
        os.link(temporary, out)  # fails rather than overwrite a file that appeared meanwhile
    finally:
        temporary.unlink(missing_ok=True)


def archive_source(path: str | Path) -> tuple[LogSource, list[str]]:
    """The log inside an export archive, and what is wrong with the archive itself (members that
    do not match the manifest)."""
    problems: list[str] = []
    with tarfile.open(path, mode="r:gz") as tar:
        contents: dict[str, bytes] = {}
        for member in tar.getmembers():
            if not member.isfile():
                problems.append(f"{member.name}: not a regular file (inserted)")
                continue
            handle = tar.extractfile(member)
            assert handle is not None
            contents[member.name] = handle.read()
    manifest_data = contents.pop(MANIFEST, None)
    if manifest_data is None:
        raise ValueError(f"{path} is not an mcplane audit export (no {MANIFEST})")
    manifest: Any = orjson.loads(manifest_data)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:  # pyright: ignore[reportUnknownMemberType]
        raise ValueError(f"{path} is not an mcplane audit export")
    log_files = LogFiles(Path(str(manifest["log"])))
    segments: list[Segment] = []
    for entry in manifest["segments"]:
        name = f"segments/{entry['name']}"
        data = contents.pop(name, None)
        if data is None:
            problems.append(f"{name}: in the manifest but not in the archive (deleted)")
            continue
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            problems.append(f"{name}: SHA-256 differs from the manifest (edited)")
        first = entry["first_seq"] if entry["name"] != log_files.name else None
        segments.append(Segment(str(entry["name"]), data.split(b"\n")[:-1], first if isinstance(first, int) else None))
    lines: list[bytes] | None = None
    cp_entry = manifest.get("checkpoints")
    cp_name = str(cp_entry["name"]) if isinstance(cp_entry, dict) else f"{log_files.name}.checkpoints"
    if isinstance(cp_entry, dict):
        data = contents.pop(cp_name, None)
        if data is None:
            problems.append(f"{cp_name}: in the manifest but not in the archive (deleted)")
        else:
            if hashlib.sha256(data).hexdigest() != cp_entry["sha256"]:
                problems.append(f"{cp_name}: SHA-256 differs from the manifest (edited)")
            lines = store_lines(data)[0]
    problems += [f"{name}: not in the manifest (inserted)" for name in sorted(contents)]
    keys = [(load_public_key(str(text)), "from the archive's manifest") for text in manifest.get("public_keys", [])]
    source = LogSource(f"{log_files.name} in {Path(path).name}", segments, lines, cp_name, keys=keys)
    head = manifest.get("head")
    if isinstance(head, dict) and segments:
        last = parse_row(segments[-1].lines[-1]) if segments[-1].lines else None
        if last is not None and last.seq != head.get("seq"):
            problems.append(f"the archive's last record is {last.seq}, but its manifest says {head.get('seq')}")
    return source, problems

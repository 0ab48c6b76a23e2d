"""``mcplane audit verify`` and ``mcplane audit export``.

``verify [LOG | --file LOG | --dsn DSN [--table T]] [--checkpoints WHERE] [--public-key KEY]...
[--no-checkpoints]``: LOG is a JSONL log (its active segment), a directory of its segments, or an
export archive. Prints ``ok: N records (seq 1-N, FIRST to LAST, in K segments)``, the latest valid
checkpoint (what it covers, which key signed it), how many records came after it and the head,
and exits 0; or prints each problem (the chain's first, then truncation, replacement, forged
checkpoints, archive members that do not match the manifest) and exits 1. Exit 2: unreadable, or
no key to check the checkpoints with.

``export LOG --out ARCHIVE``: see :mod:`mcplane.audit.export`; exits 1 (after writing the archive)
when the log does not verify.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import anyio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mcplane.audit.completeness import CompletenessReport, LogSource, check, file_source, postgres_source
from mcplane.audit.keys import load_public_key

__all__ = ["export_main", "verify_main"]

_KEY_HELP = (
    "trust checkpoints signed by this key: ed25519:..., PEM, a file holding one, or a secret reference such as "
    "'${env:NAME}' (repeatable; default: the key generated beside the checkpoints, if any)"
)


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | int:
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2


def _reveal(value: str) -> str:
    from mcplane.secrets import Secret, Secrets

    resolved = Secrets(refresh_interval=None).resolve(value)
    return resolved.get() if isinstance(resolved, Secret) else resolved


def _trusted(values: list[str] | None) -> list[tuple[Ed25519PublicKey, str]] | None:
    if not values:
        return None
    keys: list[tuple[Ed25519PublicKey, str]] = []
    for value in values:
        text = _reveal(value) if "${" in value else value
        if "\n" not in text and not text.startswith("ed25519:") and Path(text).is_file():
            text = Path(text).read_text(encoding="ascii")
        keys.append((load_public_key(text), "given with --public-key"))
    return keys


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def verify_main(argv: list[str]) -> int:
    """``mcplane audit verify``: 0 when the log is intact and complete, 1 at any problem, 2 if unreadable."""
    parser = argparse.ArgumentParser(
        prog="mcplane audit verify", description="Verify an audit log's hash chain against its signed checkpoints."
    )
    parser.add_argument("log", nargs="?", help="a JSONL audit log, a directory of its segments, or an export archive")
    parser.add_argument("--file", help="a JSONL audit log (the same as LOG)")
    parser.add_argument("--dsn", help="a PostgreSQL DSN, or a secret reference such as '${env:AUDIT_DSN}'")
    parser.add_argument("--table", default=None, help="the PostgreSQL audit table (default: mcplane_audit)")
    parser.add_argument(
        "--checkpoints",
        metavar="WHERE",
        help="the checkpoint file, or table with --dsn (default: <log>.checkpoints, <table>_checkpoints)",
    )
    parser.add_argument("--public-key", action="append", metavar="KEY", help=_KEY_HELP)
    parser.add_argument(
        "--no-checkpoints",
        action="store_true",
        help="check the chain alone: a truncated or replaced log goes unnoticed",
    )
    args = _parse(parser, argv)
    if isinstance(args, int):
        return args
    given = [value for value in (args.log, args.file, args.dsn) if value is not None]
    if len(given) != 1:
        parser.print_usage(sys.stderr)
        return _error("give one log: LOG, --file or --dsn")
    if args.table is not None and args.dsn is None:
        parser.print_usage(sys.stderr)
        return _error("--table goes with --dsn")
    try:
        trusted = _trusted(args.public_key)
    except (ValueError, OSError) as exc:
        return _error(f"--public-key: {exc}")
    problems: list[str] = []
    try:
        if args.dsn is not None:
            from mcplane.audit.postgres import DEFAULT_TABLE

            source: LogSource = anyio.run(
                postgres_source, _reveal(args.dsn), args.table or DEFAULT_TABLE, args.checkpoints
            )
        else:
            from mcplane.audit.export import archive_source, is_archive

            target = args.log or args.file
            if is_archive(target):
                source, problems = archive_source(target)
            else:
                source = file_source(target, args.checkpoints)
        report = check(source, trusted, checkpoints=not args.no_checkpoints)
    except LookupError as exc:
        return _error(str(exc))
    except Exception as exc:
        return _error(f"cannot read the audit log: {type(exc).__name__}: {str(exc)[:300]}")
    report.findings[:0] = problems
    print(report.render())
    return 0 if report.ok else 1


def export_main(argv: list[str]) -> int:
    """``mcplane audit export LOG --out ARCHIVE``: 0 when written and verified, 1 when written but the
    log does not verify, 2 when nothing was written."""
    parser = argparse.ArgumentParser(
        prog="mcplane audit export",
        description="Archive a JSONL audit log's segments and checkpoints (tar.gz with a SHA-256 manifest).",
    )
    parser.add_argument("log", help="the JSONL audit log (its active segment's path) or the directory holding it")
    parser.add_argument(
        "--out", required=True, metavar="ARCHIVE", help="the archive to write (.tar.gz; never overwritten)"
    )
    parser.add_argument("--checkpoints", metavar="PATH", help="the checkpoint file (default: <log>.checkpoints)")
    parser.add_argument("--public-key", action="append", metavar="KEY", help=_KEY_HELP)
    args = _parse(parser, argv)
    if isinstance(args, int):
        return args
    from mcplane.audit.export import export_log

    try:
        trusted = _trusted(args.public_key)
    except (ValueError, OSError) as exc:
        return _error(f"--public-key: {exc}")
    try:
        result = export_log(args.log, args.out, checkpoints=args.checkpoints, trusted=trusted)
    except LookupError as exc:
        return _error(str(exc))
    except Exception as exc:
        return _error(f"cannot export the audit log: {type(exc).__name__}: {str(exc)[:300]}")
    manifest = result.manifest
    print(
        f"wrote {result.path}: {manifest['records']} records in {len(manifest['segments'])} segments, "
        f"with {_covered(manifest)}"
    )
    print(_summary(result.report))
    return 0 if result.report.ok else 1


def _covered(manifest: dict[str, object]) -> str:
    latest = manifest.get("latest_checkpoint")
    if not isinstance(latest, dict):
        return "no checkpoint"
    return f"the checkpoint of {latest.get('at')} (seq {latest.get('seq')})"  # pyright: ignore[reportUnknownMemberType]


def _summary(report: CompletenessReport) -> str:
    text = report.render()
    return text if report.ok else f"the log does not verify (the archive holds it as it is):\n{text}"

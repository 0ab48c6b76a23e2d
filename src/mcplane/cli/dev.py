"""``mcplane dev TARGET``: serve a Plane over HTTP and restart it whenever its files change.

This process binds the port once and runs ``mcplane run TARGET --transport http`` as a child on
that socket (the child is a worker, see :mod:`mcplane.transports.workers`); every ``interval``
it compares the size and modification time of the ``.py`` files under the watched directories
(the target file's own by default) and of ``--config``, and on a change stops the child and
starts a fresh one. Connections that arrive during the restart wait in the socket's backlog
instead of being refused. A child that fails to start (a syntax error just saved) is reported
and retried at the next change. SIGINT or SIGTERM stops the child and exits 0.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mcplane.errors import ConfigError

__all__ = ["dev", "inspector_hint", "snapshot"]

FIRST_SIGNAL_SECONDS = 1.0
"""How long a stopping child may drain calls in flight before a second signal cuts them short."""
STOP_SECONDS = 10.0
"""How long it may then take before it is killed."""
_SKIP_DIRS = frozenset({"__pycache__", "node_modules", "site-packages", "venv"})
_MAX_FILES = 5000


def inspector_hint(url: str) -> str:
    """How to attach the MCP Inspector to ``url`` (its web UI, and its command-line mode)."""
    return (
        "Attach the MCP Inspector:\n"
        f"  npx @modelcontextprotocol/inspector    (transport: Streamable HTTP, URL: {url})\n"
        f"  npx @modelcontextprotocol/inspector --cli {url} --transport http --method tools/list\n"
    )


def snapshot(roots: Iterable[Path], extra: Iterable[Path] = ()) -> dict[str, tuple[int, int]]:
    """``path -> (mtime_ns, size)`` of every ``.py`` file under ``roots`` (hidden and virtualenv
    directories skipped) and of each ``extra`` file."""
    seen: dict[str, tuple[int, int]] = {}

    def note(path: str) -> None:
        try:
            info = os.stat(path)
        except OSError:
            return  # gone between listing and looking: the next snapshot tells
        seen[path] = (info.st_mtime_ns, info.st_size)

    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS]
            for name in files:
                if name.endswith(".py") and len(seen) < _MAX_FILES:
                    note(os.path.join(folder, name))
    for path in extra:
        note(str(path))
    return seen


def dev(args: argparse.Namespace) -> int:
    from mcplane.transports.serve import bind_socket

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"port must be between 0 and 65535, got {args.port}")
    if not args.interval > 0:
        raise ConfigError(f"--interval must be positive, got {args.interval:g}")
    source = Path(args.target.partition(":")[0])
    if source.suffix == ".py" and not source.is_file():
        raise ConfigError(f"no such file: {source}")
    roots = [Path(d) for d in args.watch] if args.watch else [source.parent if source.suffix == ".py" else Path()]
    for root in roots:
        if not root.is_dir():
            raise ConfigError(f"--watch {root}: no such directory")
    extra = [Path(args.config)] if args.config else []
    sock = bind_socket(args.host, args.port)
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{port}{args.path}"
    command = [sys.executable, "-m", "mcplane.cli", "run", args.target, "--transport", "http"]
    command += ["--host", args.host, "--port", str(port), "--path", args.path, "--worker-fd", str(sock.fileno())]
    if args.config:
        command += ["--config", args.config]
    watched = ", ".join(str(root) for root in roots)
    sys.stdout.write(
        f"mcplane dev: serving {args.target} at {url} (Streamable HTTP; WebSocket at "
        f"ws://{host}:{port}{args.path})\n"
        f"Restarting when a .py file under {watched}{' or ' + args.config if args.config else ''} changes; "
        "Ctrl-C stops.\n" + inspector_hint(url)
    )
    sys.stdout.flush()
    try:
        return _Reloader(command, sock.fileno(), roots, extra, args.interval).run()
    finally:
        sock.close()


class _Reloader:
    def __init__(self, command: list[str], fd: int, roots: list[Path], extra: list[Path], interval: float) -> None:
        self.command = command
        self.fd = fd
        self.roots = roots
        self.extra = extra
        self.interval = interval
        self.stop = threading.Event()
        self.child: subprocess.Popen[bytes] | None = None

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            state = snapshot(self.roots, self.extra)
            self._start()
            reported = False
            while not self.stop.wait(self.interval):
                now = snapshot(self.roots, self.extra)
                if now != state:
                    changed, state = _changes(state, now), now
                    print(f"mcplane dev: files changed{changed}; restarting", file=sys.stderr, flush=True)
                    self._end()
                    self._start()
                    reported = False
                elif self.child is not None and self.child.poll() is not None and not reported:
                    print(
                        f"mcplane dev: the server exited with status {self.child.returncode}; "
                        "waiting for a change to start it again",
                        file=sys.stderr,
                        flush=True,
                    )
                    reported = True
        finally:
            self._end()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stop.set()

    def _start(self) -> None:
        # No bytecode is written: an edit within the same second as a cached copy would be missed.
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        self.child = subprocess.Popen(
            self.command, pass_fds=(self.fd,), env=env, stdin=subprocess.DEVNULL, start_new_session=True
        )

    def _end(self) -> None:
        child, self.child = self.child, None
        if child is None or child.poll() is not None:
            return
        # The first SIGTERM drains; a second one, a moment later, stops waiting for calls in
        # flight (a dev server restarts now, its clients try again); then it is killed.
        for wait in (FIRST_SIGNAL_SECONDS, STOP_SECONDS):
            try:
                child.send_signal(signal.SIGTERM)
                child.wait(timeout=wait)
                return
            except ProcessLookupError:
                return
            except subprocess.TimeoutExpired:
                continue
        child.kill()
        child.wait()


def _changes(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> str:
    names = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    return f": {', '.join(Path(p).name for p in names[:3])}{' ...' if len(names) > 3 else ''}" if names else ""

"""``mcplane run --workers N``: a small supervisor and N worker processes sharing one listening socket.

The supervisor binds the socket, then starts N copies of ``mcplane run`` that inherit it
(``--worker-fd``); the kernel hands each new connection to one of them. Workers are fresh
interpreters (started with ``exec``, not forked from a process that may hold threads), each with
its own event loop, plane and lifespan; shared state (rate limits, cache, budgets) lives in
Redis as it does across replicas.

- **Metrics**: the supervisor points ``PROMETHEUS_MULTIPROC_DIR`` at an empty directory (a
  temporary one, unless set already: then it is emptied) before any worker starts, so every
  worker writes its metrics there and a scrape of any worker returns the sums over all of them
  (see :mod:`mcplane.observability.metrics`). With ``observability.metrics.port`` the
  supervisor serves that port itself.
- **Signals**: SIGTERM or SIGINT to the supervisor is passed on to every worker (SIGTERM), which
  drains as a single server does; the supervisor exits 0 when all of them exited 0. Workers run
  in their own session, so a terminal's Ctrl-C reaches them once, through the supervisor. A
  worker whose supervisor disappears drains on its own.
- **Sessions**: without ``sessions.keys`` in the config, the supervisor draws one random key and
  hands it to every worker (``MCPLANE__SESSIONS__KEYS`` in their environment, readable only by
  the same user), so a 2025-11-25 session opened on one worker continues on any other, as it
  does across replicas that share configured keys.
- **Crashes**: a worker that dies while serving is replaced; one that dies within
  :data:`START_WINDOW` seconds of starting is a failed start, and the supervisor stops all and exits 1.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcplane.config import PlaneConfig

__all__ = ["START_WINDOW", "supervise"]

START_WINDOW = 5.0
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SESSION_KEYS_ENV = "MCPLANE__SESSIONS__KEYS"


def _metrics_dir() -> tuple[str, bool]:
    """The multiprocess directory, emptied; and whether this process created it (and removes it)."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        return str(path), False
    return tempfile.mkdtemp(prefix="mcplane-metrics-"), True


def supervise(worker_args: Sequence[str], sock: socket.socket, workers: int, config: PlaneConfig) -> int:
    """Run ``workers`` workers on ``sock`` until a signal stops them; the process's exit status."""
    path, created = _metrics_dir()
    os.environ[MULTIPROC_ENV] = path  # before anything here imports prometheus_client; inherited by workers
    if not config.sessions.keys and SESSION_KEYS_ENV not in os.environ:
        os.environ[SESSION_KEYS_ENV] = json.dumps([secrets.token_hex(32)])  # one key for all workers
    from mcplane.observability import lifecycle_event

    fd = sock.fileno()
    command = [sys.executable, "-m", "mcplane.cli", "run", *worker_args, "--worker-fd", str(fd)]
    procs: dict[int, tuple[subprocess.Popen[bytes], float]] = {}
    codes: list[int] = []
    state = {"stopping": False, "failed": False}

    def spawn() -> None:
        proc = subprocess.Popen(command, pass_fds=(fd,), start_new_session=True)
        procs[proc.pid] = (proc, time.monotonic())
        lifecycle_event("worker_started", pid=proc.pid, supervisor=os.getpid())

    def stop_all(*_: Any) -> None:
        state["stopping"] = True
        for proc, _started in list(procs.values()):
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass

    previous = {sig: signal.signal(sig, stop_all) for sig in (signal.SIGTERM, signal.SIGINT)}
    stop_metrics = _serve_metrics_port(config)
    lifecycle_event("start", transport="http", pid=os.getpid(), workers=workers, host=sock.getsockname()[0])
    try:
        for _ in range(workers):
            spawn()
        while procs:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            entry = procs.pop(pid, None)
            if entry is None:
                continue
            proc, started = entry
            proc.returncode = code = os.waitstatus_to_exitcode(status)
            _mark_dead(pid, path)
            if state["stopping"]:
                codes.append(code)
                continue
            lifecycle_event("worker_exited", pid=pid, code=code)
            if time.monotonic() - started < START_WINDOW:
                state["failed"] = True
                stop_all()
            else:
                spawn()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if stop_metrics is not None:
            stop_metrics()
        if created:
            shutil.rmtree(path, ignore_errors=True)
    status = 1 if state["failed"] or any(codes) else 0
    lifecycle_event("stopped", transport="http", pid=os.getpid(), workers=workers, status=status)
    return status


def _mark_dead(pid: int, path: str) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, path)


def _serve_metrics_port(config: PlaneConfig) -> Callable[[], None] | None:
    section = config.observability
    if not section.metrics.enabled or section.metrics.port is None:
        return None
    from mcplane.observability.metrics import serve_metrics_port

    return serve_metrics_port(section.metrics.host, section.metrics.port)

"""The scale test bed: three ``mcplane run`` replicas behind nginx, sharing Redis and a PostgreSQL audit log.

::

    python scripts/testbed.py up [--detach]     # start; prints the load balancer's URL
    python scripts/testbed.py status            # each replica's /ready, the LB's /health
    python scripts/testbed.py down              # stop; drops the audit table and Redis keys (unless up --keep)

Each replica serves ``deploy/testbed/app.py`` with a generated ``mcplane.yaml``: an API key whose
subject names this test bed instance (so its rate-limit keys in Redis are its own), rate limit
and cache on Redis, audit to a table of its own in the ``mcplane_testbed`` PostgreSQL database
(created if missing). nginx runs in the foreground as a child process with a generated config:
round-robin, no stickiness, HTTP/1.1 keep-alive to the replicas, ``proxy_buffering off`` (SSE),
WebSocket upgrades passed through. Every port is picked free at start.

The same machinery is a library for the tests (``tests/e2e/test_testbed.py``): :class:`TestBed`.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed_services import (
    AUDIT_DATABASE,
    START_TIMEOUT,
    STOP_TIMEOUT,
    PrivateRedis,
    delete_redis_keys,
    drop_audit_table,
    ensure_audit_database,
    free_port,
    http_get,
    nginx_binary,
    wait_until,
    with_database,
)

__all__ = ["REPO_ROOT", "PrivateRedis", "Replica", "TestBed", "free_port", "http_get", "nginx_binary", "wait_until"]

REPO_ROOT = Path(__file__).resolve().parents[1]
APP = REPO_ROOT / "deploy" / "testbed" / "app.py"
NGINX_TEMPLATE = REPO_ROOT / "deploy" / "testbed" / "nginx.conf.template"
CONFIG_TEMPLATE = REPO_ROOT / "deploy" / "testbed" / "mcplane.yaml.template"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
STATE_FILE = "testbed.json"


@dataclass
class Replica:
    index: int
    port: int
    proc: subprocess.Popen[bytes] | None = None
    pid: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class TestBed:
    """Replicas + nginx; ``start()`` / ``stop()``, or ``with TestBed(...) as bed:``."""

    __test__ = False  # not a pytest test class

    workdir: Path
    replicas: int = 3
    redis_url: str = DEFAULT_REDIS_URL
    pg_admin_dsn: str = DEFAULT_PG_ADMIN_DSN
    quota_limit: str = "600/minute"
    quota_cache_ttl: str = "2s"
    shutdown_grace: str = "5s"
    extra_tools: dict[str, dict[str, str]] = field(default_factory=dict)
    """More per-tool policies for mcplane.yaml (``{"catalog": {"cache_ttl": "60s"}}``)."""
    extra: str = ""
    """More top-level YAML for mcplane.yaml (e.g. a ``budget:`` section)."""
    audit_sink: str = "postgres"
    """``postgres`` (the test bed's table) or ``file`` (one JSONL file per replica, for comparison)."""
    instance: str = field(default_factory=lambda: secrets.token_hex(4))
    session_key: str = field(default_factory=lambda: secrets.token_hex(32))
    """Shared by every replica: a session opened on one continues on any other (``sessions.keys``)."""
    keys: int = 4
    """API keys, one principal each: a test takes its own key, so its rate-limit bucket is fresh."""
    api_keys: list[str] = field(default_factory=list)
    members: list[Replica] = field(default_factory=list)
    lb_port: int = 0
    nginx: subprocess.Popen[bytes] | None = None
    nginx_pid: int = 0

    # ------------------------------------------------------------------ names
    @property
    def subject(self) -> str:
        """What every principal's subject starts with (and every Redis key of this instance holds)."""
        return f"testbed-{self.instance}"

    def subject_for(self, key: int) -> str:
        return f"{self.subject}-k{key}"

    @property
    def api_key(self) -> str:
        return self.api_keys[0]

    @property
    def audit_table(self) -> str:
        return f"testbed_audit_{self.instance}"

    @property
    def audit_dsn(self) -> str:
        return with_database(self.pg_admin_dsn, AUDIT_DATABASE)

    @property
    def lb_url(self) -> str:
        return f"http://127.0.0.1:{self.lb_port}/mcp"

    @property
    def lb_base(self) -> str:
        return f"http://127.0.0.1:{self.lb_port}"

    @property
    def headers(self) -> dict[str, str]:
        return self.headers_for(0)

    def headers_for(self, key: int) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_keys[key]}"}

    def config_path(self, index: int) -> Path:
        return self.workdir / f"mcplane-{index}.yaml"

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> TestBed:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        ensure_audit_database(self.pg_admin_dsn)
        for index in range(self.replicas):
            self.config_path(index).write_text(self.render_config(index))
        try:
            self.members = [Replica(i, 0) for i in range(self.replicas)]
            for replica in self.members:  # start them all, then wait for each
                self.launch_replica(replica)
            for replica in self.members:
                self.await_replica(replica)
            self.start_nginx()
        except BaseException:
            self.stop(purge=True)
            raise

    def render_config(self, index: int = 0) -> str:
        from mcplane.auth import hash_api_key

        if not self.api_keys:
            self.api_keys = ["tb_" + secrets.token_urlsafe(24) for _ in range(self.keys)]
        entry = '    - {{id: k{}, hash: "{}", subject: "{}", tenant: "{}"}}'
        entries = [
            entry.format(n, hash_api_key(key), self.subject_for(n), self.subject) for n, key in enumerate(self.api_keys)
        ]
        values = {
            "redis_url": self.redis_url,
            "session_key": self.session_key,
            "api_keys": "\n".join(entries),
            "audit_dsn": self.audit_dsn,
            "audit_table": self.audit_table,
            "quota_limit": self.quota_limit,
            "quota_cache_ttl": self.quota_cache_ttl,
            "shutdown_grace": self.shutdown_grace,
            "extra_tools": "\n".join(f"  {tool}: {json.dumps(policy)}" for tool, policy in self.extra_tools.items()),
            "extra": self.extra,
            "audit": self.audit_section(index),
        }
        return _fill(CONFIG_TEMPLATE.read_text(), values)

    def audit_section(self, index: int) -> str:
        if self.audit_sink == "file":  # a chain per replica
            return f'  sink: file\n  path: "{self.workdir}/audit-{index}.jsonl"\n  fsync: always'
        return f'  sink: postgres\n  dsn: "{self.audit_dsn}"\n  table: "{self.audit_table}"'

    def launch_replica(self, replica: Replica, *, port: int | None = None) -> None:
        replica.port = port or free_port()
        log = (self.workdir / f"replica-{replica.index}.log").open("ab")
        command = [sys.executable, "-m", "mcplane.cli", "run", str(APP), "--transport", "http"]
        command += [
            "--host",
            "127.0.0.1",
            "--port",
            str(replica.port),
            "--config",
            str(self.config_path(replica.index)),
        ]
        proc = subprocess.Popen(
            command, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
        log.close()
        replica.proc, replica.pid = proc, proc.pid

    def await_replica(self, replica: Replica, *, fixed_port: bool = False) -> None:
        """Wait for /ready 200; a replica that lost a race for its port starts again on another."""
        for _attempt in range(3):
            proc = replica.proc
            assert proc is not None
            try:
                wait_until(lambda: http_get(replica.base + "/ready")[0] == 200, START_TIMEOUT, "replica", proc)
                return
            except RuntimeError:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                text = (self.workdir / f"replica-{replica.index}.log").read_text(errors="replace")
                if "already in use" not in text or fixed_port:
                    raise RuntimeError(f"replica {replica.index} did not become ready:\n{text[-3000:]}") from None
                self.launch_replica(replica)
        raise RuntimeError("could not start a replica on a free port in three attempts")

    def render_nginx(self) -> str:
        servers = "\n".join(f"        server 127.0.0.1:{r.port} max_fails=1 fail_timeout=2s;" for r in self.members)
        user = "user root;" if os.geteuid() == 0 else ""
        values = {"user": user, "workdir": str(self.workdir), "servers": servers, "lb_port": str(self.lb_port)}
        return _fill(NGINX_TEMPLATE.read_text(), values)

    def start_nginx(self) -> None:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed (Debian package `nginx`; scripts/install-test-deps.sh)")
        for _attempt in range(3):
            self.lb_port = free_port()
            conf = self.workdir / "nginx.conf"
            conf.write_text(self.render_nginx())
            log = (self.workdir / "nginx.log").open("ab")
            self.nginx = subprocess.Popen(
                [binary, "-p", str(self.workdir), "-c", str(conf), "-e", str(self.workdir / "nginx-error.log")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
            log.close()
            self.nginx_pid = self.nginx.pid
            try:
                wait_until(lambda: http_get(self.lb_base + "/health")[0] == 200, START_TIMEOUT, "nginx", self.nginx)
                return
            except RuntimeError:
                errors = (self.workdir / "nginx-error.log").read_text(errors="replace")
                self._stop_nginx()
                if "Address already in use" not in errors:
                    raise RuntimeError(f"nginx did not start:\n{errors[-3000:]}") from None
        raise RuntimeError("could not start nginx on a free port in three attempts")

    def kill_replica(self, index: int, sig: int = signal.SIGKILL) -> None:
        replica = self.members[index]
        if replica.proc is not None and replica.proc.poll() is None:
            replica.proc.send_signal(sig)
            replica.proc.wait(timeout=STOP_TIMEOUT)

    def restart_replica(self, index: int) -> None:
        """Start a stopped replica again on its port (nginx's upstream list stays valid)."""
        replica = self.members[index]
        self.launch_replica(replica, port=replica.port)
        self.await_replica(replica, fixed_port=True)

    def _stop_nginx(self) -> None:
        if self.nginx is not None and self.nginx.poll() is None:
            self.nginx.send_signal(signal.SIGQUIT)  # graceful: finish requests, then exit
            try:
                self.nginx.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
                self.nginx.wait()
        self.nginx = None

    def stop(self, *, purge: bool = True) -> None:
        """Stop nginx and every replica (SIGTERM: they drain); with ``purge``, drop this instance's data."""
        self._stop_nginx()
        for replica in self.members:
            proc = replica.proc
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if purge:
            self.purge()

    def purge(self) -> None:
        """Drop this instance's audit table and delete its Redis keys (nothing else is touched)."""
        drop_audit_table(self.pg_admin_dsn, self.audit_table)
        delete_redis_keys(self.redis_url, self.subject)

    # ------------------------------------------------------------------ state (for the CLI)
    def state(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "lb_url": self.lb_url,
            "lb_port": self.lb_port,
            "nginx_pid": self.nginx_pid,
            "replicas": [{"index": r.index, "port": r.port, "pid": r.pid} for r in self.members],
            "redis_url": self.redis_url,
            "pg_admin_dsn": self.pg_admin_dsn,
            "audit_dsn": self.audit_dsn,
            "audit_table": self.audit_table,
            "subject": self.subject,
            "api_keys": self.api_keys,
            "workdir": str(self.workdir),
            "owner_pid": os.getpid(),
        }


def _fill(template: str, values: dict[str, str]) -> str:
    """Replace every ``@@name@@`` (templates of nginx and YAML text, both full of braces and dollars)."""
    for name, value in values.items():
        template = template.replace(f"@@{name}@@", value)
    if "@@" in template:
        raise ValueError(f"unfilled placeholder in template near {template[template.index('@@') :][:40]!r}")
    return template


# ---------------------------------------------------------------------------------------------- CLI
def _state_dir(given: str | None) -> Path:
    return Path(given or os.environ.get("MCPLANE_TESTBED_DIR") or Path(tempfile.gettempdir()) / "mcplane-testbed")


def _up(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args.dir)
    state_path = state_dir / STATE_FILE
    if state_path.exists():
        print(f"a test bed is already up (see {state_path}); run `down` first", file=sys.stderr)
        return 1
    if args.detach:
        state_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, __file__, "up", "--dir", str(state_dir), "--replicas", str(args.replicas)]
        command += ["--redis-url", args.redis_url, "--pg-dsn", args.pg_dsn] + (["--keep"] if args.keep else [])
        with (state_dir / "up.log").open("ab") as log:
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        wait_until(state_path.exists, START_TIMEOUT * (args.replicas + 1), "test bed", proc)
        print(json.loads(state_path.read_text())["lb_url"])
        return 0
    bed = TestBed(state_dir, replicas=args.replicas, redis_url=args.redis_url, pg_admin_dsn=args.pg_dsn)
    stop = threading.Event()

    def on_signal(*_: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    bed.start()
    try:
        state_path.write_text(json.dumps(bed.state(), indent=2))
        print(bed.lb_url, flush=True)
        while not stop.wait(1.0):  # a signal handler sets it; look at nginx once a second meanwhile
            if bed.nginx is not None and bed.nginx.poll() is not None:
                print("nginx exited; stopping", file=sys.stderr)
                break
    finally:
        bed.stop(purge=not args.keep)
        state_path.unlink(missing_ok=True)
    return 0


def _down(args: argparse.Namespace) -> int:
    state_path = _state_dir(args.dir) / STATE_FILE
    if not state_path.exists():
        print("no test bed is up", file=sys.stderr)
        return 1
    owner = int(json.loads(state_path.read_text())["owner_pid"])
    try:
        os.kill(owner, signal.SIGTERM)
    except ProcessLookupError:
        state_path.unlink(missing_ok=True)
        return 0
    wait_until(lambda: not _alive(owner), STOP_TIMEOUT * 4, "test bed stop")
    print("down")
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _status(args: argparse.Namespace) -> int:
    state_path = _state_dir(args.dir) / STATE_FILE
    if not state_path.exists():
        print("down")
        return 1
    state = json.loads(state_path.read_text())
    healthy = True
    lb_status, _ = http_get(f"http://127.0.0.1:{state['lb_port']}/health")
    print(f"lb      {state['lb_url']}  /health {lb_status or 'no answer'}  (nginx pid {state['nginx_pid']})")
    healthy &= lb_status == 200
    for replica in state["replicas"]:
        status, _ = http_get(f"http://127.0.0.1:{replica['port']}/ready")
        print(
            f"replica {replica['index']}  port {replica['port']}  pid {replica['pid']}  /ready {status or 'no answer'}"
        )
        healthy &= status == 200
    return 0 if healthy else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("verb", choices=("up", "down", "status"))
    parser.add_argument("--dir", help="state and log directory (default: $MCPLANE_TESTBED_DIR or a temp dir)")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--pg-dsn", default=DEFAULT_PG_ADMIN_DSN, help="a PostgreSQL DSN allowed to CREATE DATABASE")
    parser.add_argument("--detach", action="store_true", help="up: start in the background, print the URL, return")
    parser.add_argument("--keep", action="store_true", help="up: keep the audit table and Redis keys after down")
    args = parser.parse_args(argv)
    return {"up": _up, "down": _down, "status": _status}[args.verb](args)


if __name__ == "__main__":
    sys.exit(main())

"""The container image, built for real with podman and run from its own root file system.

No Docker engine runs here and OCI runtimes cannot start containers (setting rlimits is not
permitted), so ``scripts/build-image.sh`` builds deploy/docker/Dockerfile with podman (chroot
isolation) on a locally made Debian base, and each test runs what the image would run with
``chroot`` into the mounted image: the image's ENTRYPOINT and CMD, its ENV, WorkingDir and User,
in a private mount namespace with /proc, /dev and a tmpfs /tmp; the root file system stays
read-only, as under Kubernetes' readOnlyRootFilesystem. Only the listen address changes: 127.0.0.1
and a free port instead of 0.0.0.0:8000 (and MCPLANE_HEALTH_URL with it, as deploy/README.md
says to do when serving another port).

Needs root, podman, debootstrap, unshare and chroot (bash scripts/install-test-deps.sh installs
the first two); skips without them, and fails under CI. The first build makes the base with
debootstrap (a minute or two, then cached in podman's store); after that an unchanged tree builds
nothing and a changed one rebuilds the image in under a minute."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from mcplane import __version__
from tests.conftest import REPO_ROOT, free_port
from tests.deploy.deploy_support import require_tool

# A cold build debootstraps the base and downloads every wheel.
pytestmark = [pytest.mark.image, pytest.mark.timeout(900)]

IMAGE = "localhost/mcplane:test"
DERIVED = "localhost/mcplane-derived:test"
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-image.sh"
BUILD_TIMEOUT = 840.0
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
MODERN = "2026-07-28"
UID = 10001

# Runs as root in a private mount namespace (the mounts vanish with it, whatever happens to the
# test), then becomes the image's user in the image's root file system.
CONTAINER_SHELL = r"""
set -e
root=$1 app=$2 user=$3
shift 3
mount --bind /proc "$root/proc"
mount --bind /dev "$root/dev"
mount -t tmpfs -o mode=1777,size=64m tmpfs "$root/tmp"
if [ -n "$app" ]; then mount --bind -o ro "$app" "$root/app"; fi
exec chroot --userspec="$user" --groups="${user#*:}" "$root" "$@"
"""

DERIVED_SERVER = '''\
"""A Plane of its own, served by an image derived from mcplane's."""

from mcplane import Plane

plane = Plane("derived")


@plane.tool()
def shout(text: str) -> str:
    """The text in capitals."""
    return text.upper()
'''

DERIVED_CMD = ["run", "/app/server.py:plane", "--transport", "http", "--host", "0.0.0.0", "--port", "8000"]


def _tools() -> dict[str, str]:
    tools = {name: require_tool(name) for name in ("podman", "debootstrap", "unshare", "chroot")}
    if os.geteuid() != 0:
        message = "building and running the image needs root (debootstrap, chroot, podman's system store)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must run this test")
        pytest.skip(message)
    return tools


def _podman(*args: str, timeout: float = 120.0) -> str:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"podman {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _inspect(image: str) -> dict[str, Any]:
    (found,) = json.loads(_podman("image", "inspect", image))
    return found


@pytest.fixture(scope="module")
def image() -> str:
    """The image, built (or found up to date) by scripts/build-image.sh."""
    _tools()
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT), IMAGE],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"scripts/build-image.sh failed:\n{result.stderr[-6000:]}"
    assert result.stdout.strip().splitlines()[-1:] == [IMAGE], result.stdout
    print(f"scripts/build-image.sh: {time.monotonic() - started:.0f} s: {result.stderr.strip().splitlines()[-1]}")
    return IMAGE


@pytest.fixture(scope="module")
def derived_image(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``FROM mcplane`` + ``COPY server.py /app/`` + a CMD serving it: what a user builds."""
    context = tmp_path_factory.mktemp("derived-image")
    (context / "server.py").write_text(DERIVED_SERVER)
    (context / "Containerfile").write_text(
        f"FROM {image}\nCOPY server.py /app/\nCMD {json.dumps(DERIVED_CMD)}\n",
    )
    _podman(
        "build", "--isolation", "chroot", "--format", "docker", "--pull=never", "--layers=false",
        "--file", str(context / "Containerfile"), "--tag", DERIVED, str(context),
        timeout=300,
    )  # fmt: skip
    yield DERIVED
    _podman("image", "rm", DERIVED)


# --- Running an image's root file system --------------------------------------------------------


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    port: int
    rootfs: Path
    stderr_path: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def lifecycle(self) -> list[dict[str, Any]]:
        found = []
        for line in self.stderr().splitlines():
            if line.startswith("{"):
                event = orjson.loads(line)
                if event.get("logger") == "mcplane.lifecycle":
                    found.append(event)
        return found


@dataclass
class ImageRun:
    """How the image runs a command: its root file system (mounted), user, environment, workdir."""

    config: dict[str, Any]
    rootfs: Path
    app: Path | None

    @property
    def user(self) -> str:
        user = self.config["Config"]["User"]
        return user if ":" in user else f"{user}:{user}"

    def environment(self, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
        env = dict(item.split("=", 1) for item in self.config["Config"].get("Env") or [])
        if "HOME" not in env:  # as Docker does: the user's home from the image's /etc/passwd, else /
            uid = self.user.partition(":")[0]
            homes = [line.split(":")[5] for line in (self.rootfs / "etc" / "passwd").read_text().splitlines()]
            uids = [line.split(":")[2] for line in (self.rootfs / "etc" / "passwd").read_text().splitlines()]
            env["HOME"] = homes[uids.index(uid)] if uid in uids else "/"
        return env | dict(overrides or {})

    def argv(self, command: list[str], overrides: Mapping[str, str] | None = None) -> list[str]:
        """The host command that runs ``command`` (an argv inside the image) as the image would."""
        workdir = self.config["Config"].get("WorkingDir") or "/"
        assignments = [f"{key}={value}" for key, value in self.environment(overrides).items()]
        inside = ["/usr/bin/env", "-i", f"--chdir={workdir}", *assignments, *command]
        return [
            "unshare", "--mount", "--propagation", "private", "--",
            "sh", "-c", CONTAINER_SHELL, "container", str(self.rootfs), str(self.app or ""), self.user, *inside,
        ]  # fmt: skip

    def exec(self, command: list[str], overrides: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(command, overrides), capture_output=True, text=True, timeout=STOP_TIMEOUT, check=False
        )


@contextmanager
def mounted(image: str, app: Path | None = None) -> Iterator[ImageRun]:
    """The image's root file system, mounted read-only by podman for as long as the block runs."""
    rootfs = Path(_podman("image", "mount", image).strip())
    try:
        yield ImageRun(_inspect(image), rootfs, app)
    finally:
        _podman("image", "unmount", image)


def _listen_on(command: list[str], port: int) -> list[str]:
    """The image's command with its listen address swapped for 127.0.0.1:port."""
    replaced = list(command)
    for flag, value in (("--host", "127.0.0.1"), ("--port", str(port))):
        assert flag in replaced, f"the image's command {command} has no {flag}"
        replaced[replaced.index(flag) + 1] = value
    return replaced


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def serving(run: ImageRun, tmp_path: Path) -> Iterator[Served]:
    """The image's ENTRYPOINT + CMD, listening on 127.0.0.1 on a free port, until /health answers."""
    config = run.config["Config"]
    port = free_port()
    command = _listen_on([*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])], port)
    overrides = {"MCPLANE_HEALTH_URL": f"http://127.0.0.1:{port}/health"}
    stderr_path = tmp_path / f"image-{port}.stderr"
    with stderr_path.open("wb") as errlog:
        proc = subprocess.Popen(
            run.argv(command, overrides), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errlog
        )
    served = Served(proc, port, run.rootfs, stderr_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _healthy(served.base):
            if proc.poll() is not None:
                pytest.fail(f"the image's server exited with {proc.returncode}:\n{served.stderr()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the image's server did not answer /health in {START_TIMEOUT:g} s:\n{served.stderr()}")
            try:
                proc.wait(timeout=0.1)  # poll: returns early if the server exits
            except subprocess.TimeoutExpired:
                continue
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)


def _call(base: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """One stateless (2026-07-28) ``tools/call`` over Streamable HTTP; the JSON-RPC result."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": name,
            "arguments": arguments,
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    }
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": MODERN,
        "mcp-method": "tools/call",
        "mcp-name": name,
    }
    response = httpx.post(f"{base}/mcp", content=orjson.dumps(body), headers=headers, timeout=10.0)
    assert response.status_code == 200, response.text
    text = response.text
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        text = [line[5:] for line in text.splitlines() if line.startswith("data:") and line[5:].strip()][-1]
    answer = orjson.loads(text)
    assert "result" in answer, answer
    return answer["result"]


def _status(pid: int) -> dict[str, list[str]]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.split() for key, _, value in (line.partition(":") for line in lines)}


def _assert_served_as_the_image_user(served: Served) -> None:
    """The process that serves is the one started, runs as uid/gid 10001 with no root group, from
    the image's root file system."""
    (start,) = [event for event in served.lifecycle() if event["event"] == "start"]
    pid = int(start["pid"])
    assert pid == served.proc.pid, "the server is the process started (exec all the way, so signals reach it)"
    status = _status(pid)
    assert status["Uid"] == [str(UID)] * 4, f"real, effective, saved and fs uid: {status['Uid']}"
    assert status["Gid"] == [str(UID)] * 4, f"real, effective, saved and fs gid: {status['Gid']}"
    assert "0" not in status.get("Groups", []), f"supplementary groups: {status.get('Groups')}"
    assert Path(f"/proc/{pid}/root").resolve() == served.rootfs.resolve()
    assert Path(f"/proc/{pid}/cwd").resolve() == served.rootfs.resolve() / "var" / "lib" / "mcplane"


def _healthcheck(run: ImageRun, port: int) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command, run as the image runs it, for a server on ``port``."""
    test = run.config["Healthcheck"]["Test"]
    command = test[1:] if test[0] == "CMD" else ["/bin/sh", "-c", test[1]]
    return run.exec(command, {"MCPLANE_HEALTH_URL": f"http://127.0.0.1:{port}/health"})


def _stop(served: Served) -> None:
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=STOP_TIMEOUT) == 0, served.stderr()
    assert [event["event"] for event in served.lifecycle()][-1] == "stopped"


# --- The tests ----------------------------------------------------------------------------------


def test_image_config_runs_mcplane_as_uid_10001_with_a_healthcheck(image: str) -> None:
    config = _inspect(image)
    assert config["Config"]["User"] == f"{UID}:{UID}"
    assert config["Config"]["Entrypoint"] == ["mcplane"]
    assert config["Config"]["WorkingDir"] == "/var/lib/mcplane"
    assert "8000/tcp" in config["Config"]["ExposedPorts"]
    test = config["Healthcheck"]["Test"]
    assert test[0] == "CMD", "the HEALTHCHECK survives the build (Docker format)"
    assert "MCPLANE_HEALTH_URL" in test[-1]
    assert "io.mcplane.base.recipe" in config["Labels"], "built on the locally made base"

    with mounted(image) as run:
        passwd = {line.split(":")[2]: line.split(":") for line in (run.rootfs / "etc/passwd").read_text().splitlines()}
        assert passwd[str(UID)][0] == "mcplane"
        assert passwd[str(UID)][6] == "/usr/sbin/nologin"
        workdir = (run.rootfs / "var/lib/mcplane").stat()
        assert (workdir.st_uid, workdir.st_gid) == (UID, UID), "the working directory is the user's"
        assert not list((run.rootfs / "app").iterdir()), "/app is for the user's server"
        assert not (run.rootfs / "src").exists(), "no source tree in the runtime"
        assert not (run.rootfs / "wheels").exists(), "the wheels were only mounted for the install"

        version = run.exec(["mcplane", "--version"])
        assert version.returncode == 0, version.stderr
        assert version.stdout.split() == ["mcplane", __version__], "mcplane from this repository's source"
        extras = run.exec(
            ["python", "-c", "import uvloop, httptools, opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http"]
        )
        assert extras.returncode == 0, f"the fast and otel extras are installed:\n{extras.stderr}"


def test_image_serves_health_ready_and_a_tool_call_as_uid_10001(image: str, tmp_path: Path) -> None:
    """The image's own command serving /app/server.py, here the quickstart mounted read-only there
    (the Dockerfile's other documented way to give it a server)."""
    app = tmp_path / "app"
    app.mkdir(mode=0o755)
    app.chmod(0o755)
    shutil.copy(REPO_ROOT / "examples" / "quickstart" / "server.py", app / "server.py")
    (app / "server.py").chmod(0o644)
    with mounted(image, app) as run, serving(run, tmp_path) as served:
        health = httpx.get(f"{served.base}/health", timeout=5.0)
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
        ready = httpx.get(f"{served.base}/ready", timeout=5.0)
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "ready"

        result = _call(served.base, "add", {"a": 2, "b": 3})
        assert result["isError"] is False
        assert result["structuredContent"] == {"result": 5}
        assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "billing"

        _assert_served_as_the_image_user(served)

        healthy = _healthcheck(run, served.port)
        assert healthy.returncode == 0, f"HEALTHCHECK failed against a live server:\n{healthy.stderr}"
        _stop(served)
        unhealthy = _healthcheck(run, served.port)
        assert unhealthy.returncode != 0, "HEALTHCHECK passed with no server"


def test_a_derived_image_builds_and_serves_its_own_tool(derived_image: str, tmp_path: Path) -> None:
    config = _inspect(derived_image)
    assert config["Config"]["User"] == f"{UID}:{UID}", "the user is inherited"
    assert config["Config"]["Entrypoint"] == ["mcplane"]
    assert config["Config"]["Cmd"] == DERIVED_CMD
    with mounted(derived_image) as run, serving(run, tmp_path) as served:
        result = _call(served.base, "shout", {"text": "from a derived image"})
        assert result["structuredContent"] == {"result": "FROM A DERIVED IMAGE"}
        assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "derived"
        ready = httpx.get(f"{served.base}/ready", timeout=5.0)
        assert ready.status_code == 200, ready.text
        _assert_served_as_the_image_user(served)
        _stop(served)

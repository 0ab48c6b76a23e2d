"""``mcplane run`` over stdio with no input to read: ``/dev/null``, a pipe already closed, no stdin
at all. Each is the end of input at once: the server stops promptly with exit status 0."""

from __future__ import annotations

import os
import shlex
import subprocess
from typing import Any

import pytest

from tests.conftest import QUICKSTART, REPO_ROOT, mcplane_command

PROMPTLY = 20.0
"""An interpreter's start, the plane's lifespan and its close; a hang is what this catches."""


def _run(**popen: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        popen.pop("argv", mcplane_command("run", str(QUICKSTART))),
        capture_output=True,
        text=True,
        timeout=PROMPTLY,
        cwd=REPO_ROOT,
        **popen,
    )


def _assert_clean_stop(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert "PermissionError" not in done.stderr
    assert '"level":"error"' not in done.stderr


def test_stdin_is_dev_null() -> None:
    _assert_clean_stop(_run(stdin=subprocess.DEVNULL))


def test_stdin_is_a_pipe_closed_before_the_start() -> None:
    read_end, write_end = os.pipe()
    os.close(write_end)
    try:
        _assert_clean_stop(_run(stdin=read_end))
    finally:
        os.close(read_end)


@pytest.mark.skipif(not os.path.exists("/bin/sh"), reason="needs a POSIX shell to close descriptor 0")
def test_no_stdin_at_all() -> None:
    command = "exec 0<&- " + shlex.join(mcplane_command("run", str(QUICKSTART)))
    _assert_clean_stop(_run(argv=["/bin/sh", "-c", command]))

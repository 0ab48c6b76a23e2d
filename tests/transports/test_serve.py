"""Running a Plane: binding the socket first, choosing the transport."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys

import pytest

from mcplane import Plane
from mcplane.errors import ConfigError
from mcplane.transports.serve import bind_socket, run


def test_bind_socket_listens_on_the_port() -> None:
    sock = bind_socket("127.0.0.1", 0)
    try:
        host, port = sock.getsockname()
        assert host == "127.0.0.1"
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        sock.close()


def test_a_port_in_use_is_a_config_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"^cannot listen on 127\.0\.0\.1:{port}: Address already in use$"):
            bind_socket("127.0.0.1", port)


def test_an_address_not_on_this_host_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^cannot listen on 192\.0\.2\.1:0: "):
        bind_socket("192.0.2.1", 0)  # TEST-NET-1: never assigned to a local interface


def test_unknown_transport_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown transport 'carrier-pigeon': expected stdio, http or ws"):
        run(Plane("p"), "carrier-pigeon", host="127.0.0.1", port=0)


def test_settle_heap_freezes_what_the_start_built_and_cycles_made_later_are_still_collected() -> None:
    # In a child: a frozen heap stays frozen for the rest of the process.
    code = (
        "import gc, weakref\n"
        "from mcplane.transports.serve import settle_heap\n"
        "assert gc.get_freeze_count() == 0\n"
        "settle_heap()\n"
        "assert gc.get_freeze_count() > 1000, gc.get_freeze_count()\n"
        "class Node: pass\n"
        "a, b = Node(), Node(); a.other, b.other = b, a\n"
        "gone = weakref.ref(a); del a, b\n"
        "gc.collect()\n"
        "assert gone() is None\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


@pytest.mark.skipif(importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed")
def test_stdio_runs_on_uvloop_unless_a_standard_descriptor_is_closed() -> None:
    code = (
        "import os\n"
        "from mcplane.transports.serve import _stdio_on_uvloop\n"
        "print(_stdio_on_uvloop())\n"
        "os.close(0)\n"
        "print(_stdio_on_uvloop())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False"]

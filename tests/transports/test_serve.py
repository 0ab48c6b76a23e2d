"""Running a Plane: binding the socket first, choosing the transport."""

from __future__ import annotations

import socket

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

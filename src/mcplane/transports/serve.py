"""Running a Plane: stdio in this process, or HTTP/WebSocket under uvicorn on a pre-bound socket.

Either way SIGTERM and SIGINT stop it in order (see :mod:`mcplane.observability.lifecycle`):
``/ready`` turns 503 at once, new calls are refused with ``dependency_unavailable``, calls in
flight get ``server.shutdown_grace`` to finish, answers are written, the plane's lifespan closes
(audit and spans flushed), and the process exits 0. A second signal cuts the calls in flight
short; under HTTP a third one stops without waiting for anything (uvicorn's force exit).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import logging
import os
import signal
import socket
import ssl
import threading
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import anyio
import uvicorn

from mcplane.errors import ConfigError

if TYPE_CHECKING:
    from mcplane.app import Plane
    from mcplane.config import PlaneConfig
    from mcplane.observability import Lifecycle
    from mcplane.transports.http import HTTPApp

__all__ = [
    "add_tls_arguments",
    "bind_socket",
    "configure_process_logging",
    "run",
    "serve_http",
    "serve_stdio_until_stopped",
    "tls_arguments",
    "tls_from_arguments",
]

logger = logging.getLogger("mcplane.serve")

CLOSE_TAIL_SECONDS = 5.0
"""After the drain: how long open streams (SSE, WebSocket) get to close before uvicorn cancels them."""


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind now, so a port in use is a clear error before anything starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def configure_process_logging(config: PlaneConfig, *, force: bool = True) -> None:
    """Log as ``observability.log_level``/``log_format`` say (defaults: info, auto) on stderr."""
    from mcplane.observability import configure_logging

    section = config.observability
    configure_logging(section.log_level, section.log_format, force=force)


def _loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


TLS_RELOAD_SECONDS = 30.0
"""How often a TLS server looks for a rotated certificate (``--tls-reload-interval``)."""


def settle_heap() -> None:
    """Take what the start-up built (modules, the SDK's and pydantic's schemas, the plane) out of
    the garbage collector's scans, once the server is ready to serve.

    A served process keeps ~150,000 long-lived objects; without this each full collection walks
    all of them, which at a few thousand calls per second costs more server CPU per call than
    several pipeline layers (see bench/PROFILE.md). ``gc.freeze`` after one collection leaves
    them where they are: they are still freed by reference counting, only no longer scanned for
    cycles. Called by the processes ``mcplane run`` and ``mcplane gateway`` serve from, never by
    a library import.
    """
    gc.collect()
    gc.freeze()


class _Server(uvicorn.Server):
    """uvicorn, draining on the first signal and exiting 0 after an orderly stop."""

    def __init__(self, config: uvicorn.Config, app: HTTPApp, lifecycle: Lifecycle, *, supervised: bool) -> None:
        super().__init__(config)
        self.app = app
        self.lifecycle = lifecycle
        self._loop: asyncio.AbstractEventLoop | None = None
        self._signals = 0
        self._drain: asyncio.Task[None] | None = None
        self._supervisor = os.getppid() if supervised else None

    tls_reloader: Any = None
    tls_reload_interval: float = TLS_RELOAD_SECONDS
    _tls_checked: float = 0.0

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:
            settle_heap()
            self.lifecycle.ready()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None]:
        # uvicorn's, except that it does not re-raise the signal afterwards: a drained server exits 0.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: Any) -> None:
        # A signal handler: set flags, hand the rest to the event loop.
        self._signals += 1
        loop = self._loop
        if loop is None or not self.started:
            self.should_exit = True  # still starting: nothing to drain
            return
        if self._signals == 1:
            self.app.draining = True  # /ready answers 503 from now on
            gate = self.lifecycle.gate
            if gate is not None:
                gate.draining = True
            loop.call_soon_threadsafe(self._begin_drain, signal.Signals(sig).name)
        elif self._signals == 2:
            loop.call_soon_threadsafe(self.lifecycle.force)
        else:
            self.should_exit = self.force_exit = True

    def _begin_drain(self, signal_name: str) -> None:
        assert self._loop is not None
        self.lifecycle.begin_drain(signal_name)
        self._drain = self._loop.create_task(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        try:
            await self.lifecycle.drain()
            await self.app.close_websockets(CLOSE_TAIL_SECONDS)
        finally:
            self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self._supervisor is not None and not self._signals and os.getppid() != self._supervisor:
            logger.warning("the supervisor process is gone; draining")
            self.handle_exit(signal.SIGTERM, None)
        # uvicorn ticks every 0.1 s: look at the certificate files every tls_reload_interval.
        if self.tls_reloader is not None:
            now = time.monotonic()
            if now - self._tls_checked >= self.tls_reload_interval:
                self._tls_checked = now
                self.tls_reloader.check()
        return await super().on_tick(counter)


def serve_http(
    plane: Plane,
    *,
    host: str,
    port: int,
    sock: socket.socket | None = None,
    supervised: bool = False,
    tls: ssl.SSLContext | None = None,
    tls_reloader: Any = None,
    tls_reload_interval: float = TLS_RELOAD_SECONDS,
    **options: Any,
) -> None:
    """Serve HTTP and WebSocket until stopped. ``supervised``: a worker of ``mcplane run --workers``.

    ``tls``: serve HTTPS/WSS with this context (see :mod:`mcplane.tls`); requests carry the ASGI
    TLS extension (the verified client certificate, see :mod:`mcplane.transports.tls_scope`);
    ``tls_reloader``: checked every ``tls_reload_interval`` seconds, so a rotated certificate
    serves new handshakes without a restart. A client whose request headers or body take longer
    than ``http.header_timeout``/``http.body_timeout`` is cut off (see
    :mod:`mcplane.transports.read_timeouts`).
    Plain HTTP on a routable address is allowed but logged as a warning: put TLS here or in a
    reverse proxy / ingress in front.
    """
    from mcplane.observability import Lifecycle
    from mcplane.observability.logs import install_server_log_filters
    from mcplane.transports.http import HTTPApp, HTTPOptions
    from mcplane.transports.http_write import one_write_http_protocol
    from mcplane.transports.read_timeouts import timed_http_protocol

    install_server_log_filters()
    if not _loopback(host) and "allowed_hosts" not in options:
        # Bound to a routable address: the operator names the hosts; until then accept any Host,
        # but browsers' cross-site requests stay refused by the Origin check.
        options["allowed_hosts"] = ()
    if tls is None and not _loopback(host):
        logger.warning(
            "serving plain HTTP on %s: traffic, tokens included, is unencrypted; use --tls-cert/--tls-key "
            "or terminate TLS in a reverse proxy or ingress in front",
            host,
        )
    app = HTTPApp(plane, HTTPOptions(**options))
    sock = sock or bind_socket(host, port)
    section = plane.config.http
    http: Any = timed_http_protocol(
        one_write_http_protocol(_best_http()),
        header_timeout=section.header_timeout,
        body_timeout=section.body_timeout,
        max_header_bytes=section.max_header_bytes,
        max_headers=section.max_headers,
        on_refused=app.refused,
    )
    ws: Any = "auto"
    if tls is not None:
        from mcplane.transports.tls_scope import tls_protocols

        http, ws = tls_protocols(http, ws)
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_level="warning",
        log_config=None,  # uvicorn's records go to the process's handler (JSON or text), like every other
        access_log=False,  # mcplane logs one event per call instead
        proxy_headers=False,  # X-Forwarded-For is read by one rule, http.trusted_proxies (mcplane.audit.forwarded)
        ws_max_size=app.options.max_body_bytes,
        ws_ping_interval=app.options.ws_ping_interval,
        ws_ping_timeout=app.options.ws_ping_interval,
        timeout_graceful_shutdown=int(CLOSE_TAIL_SECONDS),
        loop=_best_loop(),
        http=http,
        ws=ws,
        ssl_context_factory=(lambda _config, _default: tls) if tls is not None else None,
    )
    lifecycle = Lifecycle(plane, "http")
    server = _Server(config, app, lifecycle, supervised=supervised)
    server.tls_reloader = tls_reloader
    server.tls_reload_interval = tls_reload_interval
    bound = sock.getsockname()
    where, secure = (f"[{bound[0]}]" if ":" in bound[0] else bound[0]), ("s" if tls is not None else "")
    lifecycle.start(
        host=bound[0],
        port=bound[1],
        url=f"http{secure}://{where}:{bound[1]}{app.options.path}",
        websocket_url=f"ws{secure}://{where}:{bound[1]}{app.options.path}",
    )
    lifecycle.install()
    try:
        server.run(sockets=[sock])
    finally:
        lifecycle.uninstall()
    lifecycle.stopped()


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--tls-*`` flags of ``mcplane run`` and ``mcplane gateway``."""
    parser.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS/WSS with this certificate chain (PEM)")
    parser.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM; default: in --tls-cert)")
    parser.add_argument("--tls-client-ca", metavar="FILE", help="require client certificates signed by this CA (mTLS)")
    parser.add_argument("--tls-crl", metavar="FILE", help="refuse client certificates this CRL revokes")
    parser.add_argument(
        "--tls-client-cert", choices=("required", "optional"), default="required", help="with --tls-client-ca"
    )
    parser.add_argument(
        "--tls-reload-interval",
        type=float,
        default=TLS_RELOAD_SECONDS,
        metavar="SECONDS",
        help=f"look for rotated certificate files this often (default {TLS_RELOAD_SECONDS:g})",
    )


def tls_from_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """``serve_http`` keywords (``tls``, ``tls_reloader``, ``tls_reload_interval``) from the flags."""
    if not args.tls_cert:
        if args.tls_key or args.tls_client_ca or args.tls_crl:
            raise ConfigError("--tls-key, --tls-client-ca and --tls-crl need --tls-cert")
        return {}
    if not args.tls_reload_interval > 0:
        raise ConfigError(f"--tls-reload-interval must be positive, got {args.tls_reload_interval:g}")
    from mcplane.tls import CertificateReloader, server_context

    context = server_context(
        args.tls_cert, args.tls_key, client_ca=args.tls_client_ca, client_cert=args.tls_client_cert, crl=args.tls_crl
    )
    reloader = CertificateReloader(context, args.tls_cert, args.tls_key, crl=args.tls_crl)
    return {"tls": context, "tls_reloader": reloader, "tls_reload_interval": args.tls_reload_interval}


def tls_arguments(args: argparse.Namespace) -> list[str]:
    """The ``--tls-*`` flags again, as a command line (for worker processes)."""
    argv: list[str] = []
    for flag in ("tls_cert", "tls_key", "tls_client_ca", "tls_crl"):
        if getattr(args, flag):
            argv += ["--" + flag.replace("_", "-"), getattr(args, flag)]
    if args.tls_client_ca:
        argv += ["--tls-client-cert", args.tls_client_cert]
    if args.tls_cert:
        argv += ["--tls-reload-interval", repr(args.tls_reload_interval)]
    return argv


def _best_loop() -> str:
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def _stdio_on_uvloop() -> bool:
    """uvloop for stdio when installed, unless a standard descriptor is closed: then uvloop's own
    descriptors could take its number, and libuv aborts the process when it closes one below 3."""
    if _best_loop() != "uvloop":
        return False
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            return False
    return True


def _best_http() -> str:
    return "httptools" if importlib.util.find_spec("httptools") is not None else "h11"


async def serve_stdio_until_stopped(plane: Plane) -> None:
    """Serve stdio until stdin closes or SIGTERM/SIGINT arrives; either way the lifespan closes.

    A client that stops a stdio server closes its stdin and, if it lingers, sends SIGTERM (the
    official SDK does so after two seconds). Stdin closing ends the serving loop once every
    request read has its answer; a signal drains first (new calls refused, calls in flight
    given the grace period), then ends the input the same way.
    """
    from mcplane.observability import Lifecycle
    from mcplane.transports.stdio import serve_stdio

    lifecycle = Lifecycle(plane, "stdio")
    stop = anyio.Event()
    lifecycle.start()
    lifecycle.install()
    try:
        async with plane.lifespan(), anyio.create_task_group() as tg:

            async def drain_then_stop() -> None:
                await lifecycle.drain()
                stop.set()

            async def on_signals() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for signum in signals:
                        if lifecycle.draining:
                            lifecycle.force()
                            continue
                        lifecycle.begin_drain(signal.Signals(signum).name)
                        tg.start_soon(drain_then_stop)

            tg.start_soon(on_signals)
            settle_heap()
            lifecycle.ready()
            await serve_stdio(plane, stop=stop)
            tg.cancel_scope.cancel()
    finally:
        lifecycle.uninstall()
    lifecycle.stopped()


def run(plane: Plane, transport: str, *, host: str, port: int, **options: Any) -> None:
    if transport not in ("stdio", "http", "ws"):
        raise ConfigError(f"unknown transport {transport!r}: expected stdio, http or ws")
    configure_process_logging(plane.config, force=False)
    if transport == "stdio":
        anyio.run(serve_stdio_until_stopped, plane, backend_options={"use_uvloop": _stdio_on_uvloop()})
    else:
        serve_http(plane, host=host, port=port, **options)

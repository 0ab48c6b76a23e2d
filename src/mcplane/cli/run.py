"""``mcplane run TARGET``: serve a Plane over stdio, or over HTTP and WebSocket (one or more workers)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from mcplane.errors import ConfigError

__all__ = ["run", "worker_args"]


def run(args: argparse.Namespace) -> int:
    from mcplane.transports.serve import bind_socket, configure_process_logging, serve_http, tls_from_arguments

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"port must be between 0 and 65535, got {args.port}")
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    if args.workers > 1 and args.transport == "stdio":
        raise ConfigError("--workers applies to the http and ws transports, not stdio")
    config = None
    if args.config is not None or any(key.startswith("MCPLANE__") for key in os.environ):
        from mcplane.config import load_config

        config = load_config(args.config)  # no file: the MCPLANE__ environment overrides alone
    if args.workers > 1 and args.worker_fd is None:
        from mcplane.config import PlaneConfig
        from mcplane.transports.workers import supervise

        config = config or PlaneConfig()
        configure_process_logging(config)
        return supervise(worker_args(args), bind_socket(args.host, args.port), args.workers, config)
    from mcplane.loader import load_plane

    plane = load_plane(args.target)
    if config is not None:
        plane.configure(config)
    configure_process_logging(plane.config)
    if args.transport == "stdio":
        plane.run("stdio")
        return 0
    if args.worker_fd is not None:
        import socket

        from mcplane.observability import setup

        setup.metrics_port_elsewhere = True  # the supervisor serves metrics.port for every worker
        sock = socket.socket(fileno=args.worker_fd)
    else:
        sock = bind_socket(args.host, args.port)
    options: dict[str, Any] = plane.config.http_options()
    if args.path != "/mcp" or "path" not in options:
        options["path"] = args.path
    if args.allow_host is not None:
        options["allowed_hosts"] = tuple(args.allow_host)
    if args.allow_origin is not None:
        options["allowed_origins"] = tuple(args.allow_origin)
    serve_http(
        plane,
        host=args.host,
        port=args.port,
        sock=sock,
        supervised=args.worker_fd is not None,
        **tls_from_arguments(args),
        **options,
    )
    return 0


def worker_args(args: argparse.Namespace) -> list[str]:
    """The ``mcplane run`` arguments a worker gets (everything but ``--workers``)."""
    argv = [args.target, "--transport", args.transport, "--host", args.host, "--port", str(args.port)]
    argv += ["--path", args.path, "--workers", "1"]
    for host in args.allow_host or ():
        argv += ["--allow-host", host]
    for origin in args.allow_origin or ():
        argv += ["--allow-origin", origin]
    if args.config is not None:
        argv += ["--config", args.config]
    from mcplane.transports.serve import tls_arguments

    return argv + tls_arguments(args)

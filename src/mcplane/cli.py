"""The ``mcplane`` command: ``run``, ``call`` and ``--version``.

Every failure an operator can cause (a bad target, a port in use, bad JSON arguments, an
endpoint that does not answer) is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import anyio
import orjson

from mcplane._version import __version__
from mcplane.errors import ConfigError

__all__ = ["main"]

EXIT_ERROR = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one ``mcplane: error:`` line like every other failure."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"mcplane: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mcplane", description="The production plane for MCP tools and agents.")
    parser.add_argument("--version", action="version", version=f"mcplane {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="serve a Plane over stdio, Streamable HTTP or WebSocket")
    run.add_argument("target", help="path/to/file.py[:object] or package.module:object")
    run.add_argument("--transport", choices=("stdio", "http", "ws"), default="stdio")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8000)
    run.add_argument("--path", default="/mcp", help="endpoint path for http and ws (default /mcp)")
    run.add_argument(
        "--allow-host", action="append", default=None, metavar="HOST", help="allowed Host header (repeatable)"
    )
    run.add_argument(
        "--allow-origin", action="append", default=None, metavar="ORIGIN", help="allowed Origin (repeatable)"
    )
    run.add_argument(
        "--config", default=os.environ.get("MCPLANE_CONFIG"), metavar="FILE", help="mcplane.yaml (or $MCPLANE_CONFIG)"
    )
    run.add_argument(
        "--workers",
        type=int,
        default=os.environ.get("MCPLANE_WORKERS") or "1",
        metavar="N",
        help="worker processes sharing the port, for http and ws (default 1, or $MCPLANE_WORKERS)",
    )
    run.add_argument("--worker-fd", type=int, default=None, help=argparse.SUPPRESS)
    from mcplane.transports.serve import add_tls_arguments

    add_tls_arguments(run)

    commands.add_parser(
        "gateway", help="federate upstream MCP servers: mcplane gateway --config gateway.yaml", add_help=False
    )

    config = commands.add_parser("config", help="work with mcplane.yaml")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = config_commands.add_parser("check", help="validate a config file (secrets resolved) and summarise it")
    check.add_argument("file")

    audit = commands.add_parser("audit", help="work with the audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_commands.add_parser("verify", help="verify the audit hash chain; exit 1 at the first problem")
    verify.add_argument("--file", metavar="PATH", help="a JSONL audit log")
    verify.add_argument("--dsn", metavar="DSN", help="a PostgreSQL audit table's database (or ${env:NAME})")
    verify.add_argument("--table", metavar="T", help="the table (default mcplane_audit)")

    call = commands.add_parser("call", help="call one tool on an MCP endpoint and print the result")
    call.add_argument("endpoint", help="http(s)://... or ws(s)://... URL, or a stdio command line")
    call.add_argument("tool")
    call.add_argument("--args", default="{}", help="tool arguments as a JSON object")
    call.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (default 30)")
    call.add_argument("--ca", metavar="FILE", help="https/wss: trust only this CA bundle (default: the system's)")
    call.add_argument("--cert", metavar="FILE", help="https/wss: present this client certificate (mTLS)")
    call.add_argument("--key", metavar="FILE", help="the client certificate's private key (default: in --cert)")
    return parser


def _fail(message: str, code: int = EXIT_ERROR) -> int:
    one_line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    print(f"mcplane: error: {one_line}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["gateway"]:
        from mcplane.gateway.cli import main as gateway_main

        return gateway_main(argv[1:])
    if argv[:2] == ["audit", "verify"] and not {"-h", "--help"} & set(argv[2:]):
        # The verifier has its own options (--file | --dsn [--table]); hand them over untouched.
        from mcplane.audit.verify import main as verify_main

        return verify_main(argv[2:])
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "config":
            return _config_check(args.file)
        if args.command == "audit":
            return _fail("usage: mcplane audit verify (--file PATH | --dsn DSN [--table T])", EXIT_USAGE)
        return _call(args)
    except ConfigError as exc:
        return _fail(exc.message)
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace) -> int:
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
        return supervise(_worker_args(args), bind_socket(args.host, args.port), args.workers, config)
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


def _worker_args(args: argparse.Namespace) -> list[str]:
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


def _config_check(file: str) -> int:
    from mcplane.config import load_config

    config = load_config(file)
    sections = [
        name for name in ("auth", "authorization", "rate_limit", "cache", "budget", "audit") if getattr(config, name)
    ]
    print(f"ok: {file}")
    print(f"  layers configured: {', '.join(sections) or 'none'}")
    print(f"  tool policies: {len(config.tools)} pattern(s); redis: {'yes' if config.redis_url else 'no'}")
    return 0


def _call(args: argparse.Namespace) -> int:
    try:
        arguments = orjson.loads(args.args)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"--args is not valid JSON: {exc}") from None
    if not isinstance(arguments, dict):
        raise ConfigError("--args must be a JSON object")
    try:
        tls = {"ca": args.ca, "cert": args.cert, "key": args.key}
        result = anyio.run(_call_async, args.endpoint, args.tool, arguments, args.timeout, tls)
    except TimeoutError:
        return _fail(f"no answer from {args.endpoint} within {args.timeout:g} s")
    except ConfigError:
        raise
    except Exception as exc:
        return _fail(f"call failed: {_describe(exc)}")
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    return EXIT_ERROR if result.get("isError") else 0


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _call_async(
    endpoint: str, tool: str, arguments: dict[str, Any], seconds: float, tls: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One call through :class:`mcplane.client.Client`: the deadline travels to the server, no retries,
    an error result is printed as it came."""
    from mcp.shared.exceptions import MCPError

    from mcplane.client import Client
    from mcplane.errors import DeadlineExceeded, MCPlaneError

    client = Client(endpoint, timeout=seconds, retry=None, raise_on_error=False, connect_timeout=None, **(tls or {}))
    with anyio.fail_after(seconds):
        try:
            async with client:
                result = await client.call_tool(tool, arguments)
        except DeadlineExceeded as exc:
            raise TimeoutError from exc
        except MCPlaneError as exc:
            if isinstance(exc.__cause__, MCPError):  # a protocol error: report it as the server put it
                raise exc.__cause__ from None
            raise
    return result.model_dump(by_alias=True, mode="json", exclude_none=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

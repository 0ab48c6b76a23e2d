"""``mcplane gateway --config gateway.yaml [--transport http|ws|stdio] [--host H] [--port P]``.

``mcplane gateway lock | quarantine | approve`` pin upstream tools and approve changed ones
(:mod:`mcplane.gateway.integrity_cli`).

:func:`main` is the command's body (``mcplane.cli`` dispatches to it): it loads the config,
builds the gateway plane and serves it like ``mcplane run`` does; SIGHUP or a change of the file
reloads the config while serving (see :mod:`mcplane.gateway.reload`). Every operator mistake is one
``mcplane: error:`` line on stderr and exit status 1 (2 for usage errors), never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from mcplane.errors import ConfigError

__all__ = ["main", "parser"]

EXIT_ERROR = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"mcplane: error: {message} (see {self.prog} --help)\n")


def parser(prog: str = "mcplane gateway") -> argparse.ArgumentParser:
    """The command's options (also for ``mcplane.cli`` to mount as a subcommand)."""
    p = _Parser(prog=prog, description="Serve MCP upstreams federated behind one endpoint.")
    p.add_argument(
        "--config",
        default=os.environ.get("MCPLANE_GATEWAY_CONFIG"),
        metavar="FILE",
        help="gateway.yaml (or $MCPLANE_GATEWAY_CONFIG)",
    )
    p.add_argument("--transport", choices=("stdio", "http", "ws"), default="http")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--path", default=None, help="endpoint path for http and ws (default: the config's, /mcp)")
    from mcplane.transports.serve import add_tls_arguments

    add_tls_arguments(p)  # --tls-cert/--tls-key/--tls-client-ca/--tls-crl/...: serve HTTPS and WSS
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from mcplane.gateway.integrity_cli import COMMANDS

    if argv[:1] and argv[0] in COMMANDS:  # lock, quarantine, approve (see mcplane.gateway.integrity_cli)
        from mcplane.gateway.integrity_cli import main as integrity_main

        return integrity_main(argv)
    args = parser().parse_args(argv)
    try:
        return _serve(args)
    except ConfigError as exc:
        print(f"mcplane: error: {' '.join(exc.message.split())}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def _serve(args: argparse.Namespace) -> int:
    from mcplane.gateway.gateway import Gateway
    from mcplane.gateway.reload import install_sighup
    from mcplane.transports.serve import configure_process_logging, serve_http, tls_from_arguments

    if args.config is None:
        raise ConfigError("--config is required (or set MCPLANE_GATEWAY_CONFIG)")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"port must be between 0 and 65535, got {args.port}")
    plane = Gateway.from_config(args.config, reload=True)
    configure_process_logging(plane.config)
    reloader = Gateway.provider_of(plane).reloader
    assert reloader is not None
    restore = install_sighup(reloader)  # before serving: a SIGHUP during start-up is queued, not fatal
    try:
        if args.transport == "stdio":
            plane.run("stdio")
            return 0
        options: dict[str, Any] = plane.config.http_options()
        if args.path is not None:
            options["path"] = args.path
        serve_http(plane, host=args.host, port=args.port, **tls_from_arguments(args), **options)
        return 0
    finally:
        restore()


if __name__ == "__main__":
    sys.exit(main())

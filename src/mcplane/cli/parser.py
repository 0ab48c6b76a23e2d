"""The ``mcplane`` command line: every command, option and help text in one tree.

Help shows each option's default (:class:`HelpFormatter`), and usage errors are one
``mcplane: error:`` line with exit status 2 (:class:`Parser`), like every other failure.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, NoReturn

from mcplane._version import __version__

__all__ = ["EXIT_USAGE", "INSTALL_CLIENTS", "LIST_KINDS", "HelpFormatter", "Parser", "build_parser"]

EXIT_USAGE = 2

LIST_KINDS = ("tools", "resources", "templates", "prompts", "all")
INSTALL_CLIENTS = ("claude-desktop", "cursor", "vscode")

_GATEWAY_HELP = {
    "--transport": "serve the gateway over this transport",
    "--host": "address to listen on",
    "--port": "port to listen on",
}
"""Help for ``mcplane gateway`` options that :mod:`mcplane.gateway.cli` declares without any."""


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, adding ``(default: X)`` to each option that has a default and does
    not say it already (flags and options without a default say nothing)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or action.nargs == 0
            or default is None
            or default is argparse.SUPPRESS
            or "default" in text
        ):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one ``mcplane: error:`` line like every other failure."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"mcplane: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="mcplane", description="The production plane for MCP tools and agents.")
    parser.add_argument("--version", action="version", version=f"mcplane {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(commands)
    _add_dev(commands)
    _add_gateway(commands)
    _add_requests(commands)
    _add_install(commands)
    _add_config(commands)
    _add_audit(commands)
    return parser


def _target_help() -> str:
    return "path/to/file.py[:object] or package.module:object"


def _add_run(commands: Any) -> None:
    run = commands.add_parser("run", help="serve a Plane over stdio, Streamable HTTP or WebSocket")
    run.add_argument("target", help=_target_help())
    run.add_argument("--transport", choices=("stdio", "http", "ws"), default="stdio", help="how clients connect")
    run.add_argument("--host", default="127.0.0.1", help="address to listen on, for http and ws")
    run.add_argument("--port", type=int, default=8000, help="port to listen on, for http and ws")
    run.add_argument("--path", default="/mcp", help="endpoint path for http and ws")
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
        help="worker processes sharing the port, for http and ws (or $MCPLANE_WORKERS)",
    )
    run.add_argument("--worker-fd", type=int, default=None, help=argparse.SUPPRESS)
    from mcplane.transports.serve import add_tls_arguments

    add_tls_arguments(run)


def _add_dev(commands: Any) -> None:
    dev = commands.add_parser(
        "dev",
        help="serve a Plane over HTTP and restart it whenever its files change",
        description="Serve TARGET over Streamable HTTP and WebSocket, restart it when a .py file under the "
        "watched directory (or --config) changes, and print how to attach the MCP Inspector.",
    )
    dev.add_argument("target", help=_target_help())
    dev.add_argument("--host", default="127.0.0.1", help="address to listen on")
    dev.add_argument("--port", type=int, default=8000, help="port to listen on")
    dev.add_argument("--path", default="/mcp", help="endpoint path")
    dev.add_argument(
        "--config", default=os.environ.get("MCPLANE_CONFIG"), metavar="FILE", help="mcplane.yaml (or $MCPLANE_CONFIG)"
    )
    dev.add_argument(
        "--watch",
        action="append",
        default=None,
        metavar="DIR",
        help="watch .py files under this directory (repeatable; default: the target file's directory)",
    )
    dev.add_argument("--interval", type=float, default=0.5, metavar="SECONDS", help="how often to look for changes")


def _add_gateway(commands: Any) -> None:
    from mcplane.gateway.cli import parser as gateway_parser

    options = gateway_parser()
    gateway = commands.add_parser(
        "gateway",
        help="federate upstream MCP servers: mcplane gateway --config gateway.yaml",
        description=options.description,
        parents=[options],
        add_help=False,
    )
    for action in gateway._actions:
        if action.help is None:
            action.help = _GATEWAY_HELP.get(action.option_strings[0] if action.option_strings else "")
    from mcplane.gateway.integrity_cli import add_commands

    add_commands(gateway.add_subparsers(dest="gateway_command", required=False, metavar="ACTION"))


def _connection_options() -> argparse.ArgumentParser:
    """Options every command that talks to a server shares: the endpoint and how to reach it."""
    options = Parser(add_help=False)
    options.add_argument(
        "endpoint",
        help="http(s):// or ws(s):// URL; a target (file.py[:object] or package.module:object) "
        "served over stdio; or a stdio command line",
    )
    options.add_argument(
        "--token",
        default=None,
        help="send 'Authorization: Bearer TOKEN' (http, ws); for stdio, give it to the server as "
        "$MCPLANE_TOKEN (default: $MCPLANE_TOKEN)",
    )
    options.add_argument(
        "--header",
        action="append",
        default=None,
        metavar="NAME:VALUE",
        help="send this HTTP header, e.g. 'X-API-Key: KEY' (repeatable; http and ws only)",
    )
    options.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS", help="seconds to wait")
    options.add_argument("--ca", metavar="FILE", help="https/wss: trust only this CA bundle (default: the system's)")
    options.add_argument("--cert", metavar="FILE", help="https/wss: present this client certificate (mTLS)")
    options.add_argument("--key", metavar="FILE", help="the client certificate's private key (default: in --cert)")
    return options


def _add_requests(commands: Any) -> None:
    shared = _connection_options()
    call = commands.add_parser("call", help="call one tool and print its result", parents=[shared])
    call.add_argument("tool", help="the tool's name")
    call.add_argument("--args", default="{}", metavar="JSON", help="tool arguments as a JSON object")

    listing = commands.add_parser(
        "list", help="list a server's tools, resources, resource templates and prompts", parents=[shared]
    )
    listing.add_argument("--kind", choices=LIST_KINDS, default="all", help="what to list")
    listing.add_argument("--json", action="store_true", help="print the full definitions as JSON")

    read = commands.add_parser("read", help="read one resource and print its contents", parents=[shared])
    read.add_argument("uri", help="the resource's URI, e.g. users://u1")

    prompt = commands.add_parser("prompt", help="get one prompt and print its messages", parents=[shared])
    prompt.add_argument("name", help="the prompt's name")
    prompt.add_argument(
        "--arg", action="append", default=None, metavar="NAME=VALUE", help="a prompt argument (repeatable)"
    )


def _add_install(commands: Any) -> None:
    install = commands.add_parser(
        "install",
        help="add a Plane to Claude Desktop's, Cursor's or VS Code's MCP servers",
        description="Write the client's MCP config so it starts `mcplane run TARGET` over stdio, with absolute "
        "paths (this environment's mcplane, the target file). Other entries in the file are kept.",
    )
    install.add_argument("client", choices=INSTALL_CLIENTS, help="the MCP client to configure")
    install.add_argument("target", help=_target_help())
    install.add_argument("--name", default=None, help="the server's name in the client (default: the Plane's name)")
    install.add_argument(
        "--config-path",
        default=None,
        metavar="PATH",
        help="the client's config file (default: the client's usual location; see docs/cli.md)",
    )
    install.add_argument("--config", default=None, metavar="FILE", help="an mcplane.yaml the server runs with")
    install.add_argument(
        "--env", action="append", default=None, metavar="NAME=VALUE", help="environment for the server (repeatable)"
    )
    install.add_argument("--dry-run", action="store_true", help="print the config it would write; write nothing")


def _add_config(commands: Any) -> None:
    config = commands.add_parser("config", help="work with mcplane.yaml and gateway.yaml")
    actions = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="validate a config file (secrets resolved) and summarise it")
    check.add_argument("file", help="mcplane.yaml, or a gateway.yaml (a file with upstreams:)")


def _add_audit(commands: Any) -> None:
    """Help for ``mcplane audit``; the actions parse their own options (:mod:`mcplane.audit.commands`)."""
    audit = commands.add_parser("audit", help="work with the audit log")
    actions = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = actions.add_parser(
        "verify", help="verify the audit log's hash chain against its signed checkpoints; exit 1 at any problem"
    )
    verify.add_argument("log", nargs="?", help="a JSONL audit log, a directory of its segments, or an export archive")
    verify.add_argument("--file", metavar="PATH", help="a JSONL audit log (the same as LOG)")
    verify.add_argument("--dsn", metavar="DSN", help="a PostgreSQL audit table's database (or ${env:NAME})")
    verify.add_argument("--table", metavar="T", help="the table (default: mcplane_audit)")
    verify.add_argument(
        "--checkpoints", metavar="WHERE", help="the checkpoint file or table (default: beside the log or table)"
    )
    verify.add_argument(
        "--public-key", metavar="KEY", action="append", help="trust checkpoints signed by this key (repeatable)"
    )
    verify.add_argument("--no-checkpoints", action="store_true", help="check the hash chain alone")
    export = actions.add_parser("export", help="archive a JSONL audit log (tar.gz with a SHA-256 manifest)")
    export.add_argument("log", help="the JSONL audit log, or the directory holding it")
    export.add_argument("--out", metavar="ARCHIVE", required=True, help="the archive to write (never overwritten)")
    export.add_argument("--checkpoints", metavar="PATH", help="the checkpoint file (default: <log>.checkpoints)")
    export.add_argument(
        "--public-key", metavar="KEY", action="append", help="trust checkpoints signed by this key (repeatable)"
    )

"""The ``mcplane`` command.

- ``run TARGET``: serve a Plane (stdio, Streamable HTTP, WebSocket) — :mod:`.run`
- ``dev TARGET``: serve it over HTTP and restart it when its files change — :mod:`.dev`
- ``gateway --config FILE``: federate upstream MCP servers — :mod:`mcplane.gateway.cli`
- ``call``, ``list``, ``read``, ``prompt``: one request to a server, printed — :mod:`.calls`
- ``install CLIENT TARGET``: add a Plane to Claude Desktop, Cursor or VS Code — :mod:`.install`
- ``config check FILE``: validate an mcplane.yaml or gateway.yaml — :mod:`.config_check`
- ``audit verify``, ``audit export``: check the audit log, archive it — :mod:`mcplane.audit.commands`

Every failure an operator can cause (a bad target, a port in use, bad JSON arguments, an
endpoint that does not answer) is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from mcplane.cli.output import fail
from mcplane.cli.parser import EXIT_USAGE, build_parser
from mcplane.errors import ConfigError

__all__ = ["main"]

_parser = build_parser
"""The whole command line (the deploy tests check container command lines against it)."""


def _commands() -> dict[str, Callable[[argparse.Namespace], int]]:
    from mcplane.cli import calls, config_check, dev, install, run

    return {
        "run": run.run,
        "dev": dev.dev,
        "call": calls.call,
        "list": calls.list_features,
        "read": calls.read,
        "prompt": calls.get_prompt,
        "install": install.install,
        "config": lambda args: config_check.check(args.file),
    }


def main(argv: Sequence[str] | None = None) -> int:
    from mcplane.cli.connect import CommandFailed

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] in (["audit", "verify"], ["audit", "export"]) and not {"-h", "--help"} & set(argv[2:]):
        # The audit actions parse their own options; hand them over untouched.
        from mcplane.audit.commands import export_main, verify_main

        return (verify_main if argv[1] == "verify" else export_main)(argv[2:])
    args = build_parser().parse_args(argv)
    if args.command == "gateway":  # checked (and --help answered) above; the gateway parses its own
        from mcplane.gateway.cli import main as gateway_main

        return gateway_main(argv[1:])
    if args.command == "audit":
        return fail(
            "usage: mcplane audit verify (LOG | --dsn DSN [--table T]) | mcplane audit export LOG --out ARCHIVE",
            EXIT_USAGE,
        )
    try:
        return _commands()[args.command](args)
    except (ConfigError, CommandFailed) as exc:
        return fail(exc.message)
    except KeyboardInterrupt:
        return 130
    except BaseExceptionGroup as group:  # raised in a task group (serving stdio, say): still one line
        found = _first_config_error(group)
        if found is None:
            raise
        return fail(found.message)


def _first_config_error(group: BaseExceptionGroup[BaseException]) -> ConfigError | None:
    for leaf in group.exceptions:
        if isinstance(leaf, ConfigError):
            return leaf
        if isinstance(leaf, BaseExceptionGroup):
            found = _first_config_error(leaf)  # pyright: ignore[reportUnknownArgumentType]
            if found is not None:
                return found
    return None

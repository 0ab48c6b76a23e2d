"""Every option of every command has help text, and help shows each default."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator

from mcplane.cli.parser import HelpFormatter, build_parser
from tests.cli.conftest import Outcome


def _commands(parser: argparse.ArgumentParser, path: str = "mcplane") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():  # pyright: ignore[reportUnknownVariableType]
                yield from _commands(sub, f"{path} {name}")  # pyright: ignore[reportUnknownArgumentType]


def test_every_option_has_help_that_shows_its_default() -> None:
    checked = 0
    for path, parser in _commands(build_parser()):
        formatter = HelpFormatter(path)
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._VersionAction | argparse._SubParsersAction):
                continue
            if action.help == argparse.SUPPRESS:
                continue  # internal (--worker-fd)
            name = "/".join(action.option_strings) or action.dest
            assert action.help, f"{path} {name} has no help text"
            checked += 1
            if action.option_strings and action.nargs != 0 and action.default is not None:
                shown = formatter._expand_help(action)
                assert "default" in shown, f"{path} {name}: help does not show its default {action.default!r}"
    assert checked > 60  # every command is walked, the gateway's options included


def test_help_output_shows_the_defaults(cli: Callable[..., Outcome]) -> None:
    run = " ".join(cli("run", "--help").stdout.split())
    assert "--port PORT port to listen on, for http and ws (default: 8000)" in run
    assert "--transport {stdio,http,ws} how clients connect (default: stdio)" in run
    gateway = " ".join(cli("gateway", "--help").stdout.split())
    assert "--port PORT port to listen on (default: 8000)" in gateway
    assert "--transport {stdio,http,ws} serve the gateway over this transport (default: http)" in gateway
    call = " ".join(cli("call", "--help").stdout.split())
    assert "--timeout SECONDS seconds to wait (default: 30.0)" in call
    assert "(default: $MCPLANE_TOKEN)" in call
    dev = " ".join(cli("dev", "--help").stdout.split())
    assert "--interval SECONDS how often to look for changes (default: 0.5)" in dev


def test_usage_errors_of_new_commands_are_one_line(cli: Callable[..., Outcome]) -> None:
    for args, expected in [
        (("list", "http://x/mcp", "--kind", "everything"), "argument --kind: invalid choice: 'everything'"),
        (("install", "emacs", "server.py"), "argument client: invalid choice: 'emacs'"),
        (("gateway", "--port", "eighty"), "argument --port: invalid int value: 'eighty'"),
    ]:
        outcome = cli(*args)
        assert outcome.returncode == 2
        assert outcome.stderr.count("\n") == 1
        assert outcome.stderr.startswith("mcplane: error: ")
        assert expected in outcome.stderr

"""What the commands print: JSON results on stdout, and failures as one ``mcplane: error:`` line on stderr."""

from __future__ import annotations

import sys
from typing import Any

import orjson

__all__ = ["EXIT_ERROR", "describe", "fail", "print_json"]

EXIT_ERROR = 1


def fail(message: str, code: int = EXIT_ERROR) -> int:
    """Print ``message`` as one ``mcplane: error:`` line on stderr; return the exit status ``code``."""
    one_line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    print(f"mcplane: error: {one_line}", file=sys.stderr)
    return code


def describe(exc: BaseException) -> str:
    """``Type: first line of the message`` of the first leaf of an exception (group)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()

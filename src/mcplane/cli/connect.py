"""How ``mcplane call``, ``list``, ``read`` and ``prompt`` reach a server, and one session with it.

The endpoint is an ``http(s)://`` or ``ws(s)://`` URL; a target (``file.py[:object]`` or
``package.module:object``) that this environment's ``mcplane run`` serves over stdio; or any
other stdio command line. Credentials: ``--token`` (else ``$MCPLANE_TOKEN``) is sent as
``Authorization: Bearer`` over HTTP and WebSocket, and handed to a stdio server as its
``$MCPLANE_TOKEN`` (which it checks like a bearer token); ``--header NAME:VALUE`` adds headers
(an explicit ``Authorization`` header wins over the token).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from mcplane.errors import ConfigError

if TYPE_CHECKING:
    from mcplane.client import Client

__all__ = ["TOKEN_ENV", "CommandFailed", "ask", "endpoint_of", "parse_headers"]

TOKEN_ENV = "MCPLANE_TOKEN"
NETWORK_SCHEMES = ("http://", "https://", "ws://", "wss://")

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_MODULE_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")

T = TypeVar("T")


class CommandFailed(Exception):
    """A request that did not get an answer; its message is the one line the user sees."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def parse_headers(raw: list[str] | None) -> dict[str, str]:
    """``["X-API-Key: k", ...]`` as a dict; a malformed one is a one-line ConfigError."""
    headers: dict[str, str] = {}
    for item in raw or ():
        name, sep, value = item.partition(":")
        name = name.strip()
        if not sep or not _HEADER_NAME.match(name):
            raise ConfigError(f"--header {item!r}: expected NAME:VALUE, e.g. 'X-API-Key: KEY'")
        headers[name] = value.strip()
    return headers


def is_target(endpoint: str) -> bool:
    """Whether ``endpoint`` names an mcplane target rather than a command line."""
    if any(char.isspace() for char in endpoint):
        return False
    source = endpoint.partition(":")[0]
    return source.endswith(".py") or bool(_MODULE_TARGET.match(endpoint))


def endpoint_of(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The :class:`~mcplane.client.Client` endpoint and keyword options the arguments describe."""
    from mcp import StdioServerParameters

    endpoint = args.endpoint.strip()
    if not endpoint:
        raise ConfigError("empty endpoint")
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV) or None
    headers = parse_headers(args.header)
    tls = {name: getattr(args, name) for name in ("ca", "cert", "key") if getattr(args, name) is not None}
    if endpoint.startswith(NETWORK_SCHEMES):
        if token is not None and not any(name.lower() == "authorization" for name in headers):
            headers["Authorization"] = f"Bearer {token}"
        return endpoint, {"headers": headers or None, **tls}
    if headers:
        raise ConfigError("--header applies to http(s):// and ws(s):// endpoints; a stdio server takes --token")
    if tls:
        raise ConfigError("--ca, --cert and --key apply to https:// and wss:// endpoints only")
    # A target is served by this environment's mcplane; anything else is a command line.
    argv = [sys.executable, "-m", "mcplane.cli", "run", endpoint] if is_target(endpoint) else shlex.split(endpoint)
    env = {TOKEN_ENV: token} if token is not None else None
    return StdioServerParameters(command=argv[0], args=argv[1:], env=env), {}


def ask(args: argparse.Namespace, what: str, request: Callable[[Client], Awaitable[T]]) -> T:
    """Open a session with the server, run ``request`` on it within ``--timeout`` seconds, close it.

    A failure to get an answer raises :class:`CommandFailed` with one line saying why; an answer
    the server gave (an error result included) is returned as it came.
    """
    endpoint, options = endpoint_of(args)
    try:
        return anyio.run(_session, endpoint, options, args.timeout, request)
    except TimeoutError:
        raise CommandFailed(f"no answer from {args.endpoint} within {args.timeout:g} s") from None
    except ConfigError:
        raise
    except Exception as exc:
        raise CommandFailed(f"{what} failed: {_explain(exc)}") from None


async def _session(
    endpoint: Any, options: dict[str, Any], seconds: float, request: Callable[[Client], Awaitable[T]]
) -> T:
    """One session through :class:`mcplane.client.Client`: the deadline travels to the server, no
    retries, an error result comes back as it came."""
    from mcp.shared.exceptions import MCPError

    from mcplane.client import Client
    from mcplane.errors import DeadlineExceeded, MCPlaneError

    client = Client(endpoint, timeout=seconds, retry=None, raise_on_error=False, connect_timeout=None, **options)
    with anyio.fail_after(seconds):
        try:
            async with client:
                return await request(client)
        except DeadlineExceeded as exc:
            raise TimeoutError from exc
        except MCPlaneError as exc:
            if isinstance(exc.__cause__, MCPError):  # a protocol error: report it as the server put it
                raise exc.__cause__ from None
            raise


def _explain(exc: BaseException) -> str:
    """One line for a failed request; a refusal for want of credentials says how to give them."""
    from mcplane.cli.output import describe

    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = describe(exc)
    data = getattr(exc, "data", None)
    error: dict[str, Any] = data if isinstance(data, dict) else {}  # pyright: ignore[reportUnknownVariableType]
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if error.get("code") == "unauthenticated" or status in (401, 403):
        details = error.get("details")
        reason = details.get("reason") if isinstance(details, dict) else None  # pyright: ignore[reportUnknownMemberType]
        because = f"{reason}; give" if isinstance(reason, str) else "if the server wants credentials, give"
        text += f" ({because} them with --token TOKEN, ${TOKEN_ENV} or --header NAME:VALUE)"
    return text

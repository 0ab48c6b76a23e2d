"""Calls to the identity provider, each bounded in time (all included) and in size.

Anything that goes wrong on the way (unreachable, too slow, too large, not JSON) is a
:class:`~mcplane.oauth.login.LoginFailed` with reason ``provider_unavailable``; the log names
the endpoint and what went wrong, never a request or response body.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import httpx
import orjson

from mcplane.oauth.login import LoginFailed

__all__ = ["ProviderAnswer", "call_provider"]

logger = logging.getLogger("mcplane.oauth")


class ProviderAnswer:
    """A provider's answer: the status and the JSON body (``None`` when the body is not JSON)."""

    __slots__ = ("body", "status")

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body


async def call_provider(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    what: str,
    seconds: float,
    max_bytes: int,
    **request: Any,
) -> ProviderAnswer:
    """``method url``: the status and parsed JSON, within ``seconds`` and ``max_bytes``."""
    try:
        with anyio.fail_after(seconds):
            async with http.stream(method, url, timeout=seconds, **request) as response:
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise _TooLarge
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise _TooLarge
                    chunks.append(chunk)
                status = response.status_code
    except _TooLarge:
        logger.warning("identity provider %s: answer larger than %d bytes", what, max_bytes)
        raise LoginFailed("provider_unavailable", f"the identity provider's {what} answer is too large") from None
    except TimeoutError:
        logger.warning("identity provider %s: no answer within %g s", what, seconds)
        raise LoginFailed("provider_unavailable", f"the identity provider's {what} did not answer in time") from None
    except httpx.HTTPError as exc:
        logger.warning("identity provider %s: %s", what, type(exc).__name__)
        raise LoginFailed("provider_unavailable", f"the identity provider's {what} is unreachable") from None
    try:
        body: Any = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError:
        body = None
    return ProviderAnswer(status, body)


class _TooLarge(Exception):
    pass

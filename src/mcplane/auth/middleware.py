"""The ``authenticate`` pipeline slot: put the transport's principal on the call's context.

The transports authenticate before a message is parsed (:class:`~mcplane.auth.http.AuthASGI`
for HTTP and WebSocket, :func:`~mcplane.auth.authenticator.principal_from_env` for stdio) and
leave the principal where this slot finds it:

* ``scope["mcplane.principal"]`` of the HTTP request that carried the message (reached through
  the SDK request context: stateful sessions serve requests in a task that outlives the
  request, so only the request itself knows who sent it);
* else the :data:`current_principal` context variable (WebSocket connections and stdio, where
  one principal holds for the whole connection).

With ``required=True`` a call that still has no principal is refused (``missing_token``): a
second line of defence for a transport that was wired without authentication.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from mcplane.auth.errors import AuthenticationFailed
from mcplane.context import Principal
from mcplane.pipeline import Call, CallNext
from mcplane.sdk_adapter.context import request_context_of

__all__ = ["SCOPE_KEY", "AuthenticateMiddleware", "current_principal", "principal_of"]

SCOPE_KEY = "mcplane.principal"

current_principal: ContextVar[Principal | None] = ContextVar("mcplane_principal", default=None)


def principal_of(request_context: Any) -> Principal | None:
    """The principal of an SDK ``ServerRequestContext`` (HTTP request scope, then context var)."""
    request = getattr(request_context, "request", None)
    scope = getattr(request, "scope", None)
    if isinstance(scope, Mapping):
        found = scope.get(SCOPE_KEY)
        if isinstance(found, Principal):
            return found
    return current_principal.get()


class AuthenticateMiddleware:
    def __init__(self, *, required: bool) -> None:
        self.required = required

    async def __call__(self, call: Call, call_next: CallNext) -> Any:
        context = call.context
        principal = context.principal  # read once: a Context attribute read is not free (pydantic)
        if principal.anonymous:
            scope = context.scope
            found = scope.get(SCOPE_KEY) if scope is not None else None
            if not isinstance(found, Principal):
                found = principal_of(request_context_of(context))
            if found is not None:
                call.context = context.replace(principal=found)
                principal = found
        if self.required and principal.anonymous:
            raise AuthenticationFailed("missing_token")
        return await call_next(call)

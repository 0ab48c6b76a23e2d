"""The ``authorize`` slot: refuse a call the principal may not make (``forbidden``).

It sits after ``audit``, so a refusal is recorded with who asked and for what. The rules and
their precedence are :class:`mcplane.auth.policy.AccessPolicy`'s; the roles and scopes a tool
declares in code arrive in ``call.policy``.
"""

from __future__ import annotations

from typing import Any

from mcplane.auth.policy import AccessPolicy
from mcplane.errors import Forbidden
from mcplane.pipeline import Call, CallNext

__all__ = ["AuthorizeMiddleware"]


class AuthorizeMiddleware:
    def __init__(self, policy: AccessPolicy | None = None) -> None:
        self.policy = policy or AccessPolicy()

    async def __call__(self, call: Call, call_next: CallNext) -> Any:
        principal = call.context.principal
        if not self.policy.allows(principal, call.kind, call.name, call.policy):
            raise Forbidden(f"not allowed to use {call.kind} {call.name!r}", details={"kind": call.kind})
        return await call_next(call)

"""The gateway's integrity endpoints: ``GET /integrity/quarantine`` and ``POST /integrity/approve``.

Approving a tool decides what every client's model reads next, so both endpoints are
authenticated with the plane's own ``auth`` section (the same credentials as ``/mcp``: a bearer
token or an API key) and need a principal holding one of ``integrity.admin.roles`` or
``integrity.admin.scopes``: no credential (or a bad one) is **401** ``unauthenticated``, a principal
without the role or scope **403** ``forbidden``. With no ``auth`` configured they answer 403
unless ``integrity.admin.allow_anonymous`` is true: never open by accident.

* ``GET /integrity/quarantine`` → ``{"quarantined": [{"upstream", "tool", "exposed", "reason",
  "pinned", "current", "findings"}]}`` (hashes in full, findings as kind, path and short detail);
* ``POST /integrity/approve`` with ``{"upstream": "...", "tool": "...", "hash": "..."}`` (``hash``
  optional: the full hash or its 12-digit prefix; when given it must be the current one, else 409)
  → ``{"approved": {...}}``; a tool that is not withheld is 404.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from mcplane.errors import Forbidden, InvalidRequest, MCPlaneError, NotFound, Unauthenticated
from mcplane.gateway.integrity import ApprovalRefused
from mcplane.transports.tier.body_cap import read_body

if TYPE_CHECKING:
    from mcplane.app import Plane
    from mcplane.context import Principal
    from mcplane.gateway.config import IntegrityAdminConfig
    from mcplane.gateway.integrity import ToolIntegrity

__all__ = ["APPROVE_PATH", "MAX_BODY", "QUARANTINE_PATH", "IntegrityEndpoints"]

QUARANTINE_PATH = "/integrity/quarantine"
APPROVE_PATH = "/integrity/approve"
MAX_BODY = 16_384


class IntegrityEndpoints:
    """The two endpoints of one running gateway; :meth:`install` adds them to the plane's routes."""

    def __init__(self, plane: Plane, integrity: ToolIntegrity, admin: IntegrityAdminConfig) -> None:
        self.plane = plane
        self.integrity = integrity
        self.admin = admin

    def install(self) -> None:
        self.plane.layers.routes[QUARANTINE_PATH] = self.quarantine
        self.plane.layers.routes[APPROVE_PATH] = self.approve

    def uninstall(self) -> None:
        for path, handler in ((QUARANTINE_PATH, self.quarantine), (APPROVE_PATH, self.approve)):
            if self.plane.layers.routes.get(path) == handler:
                del self.plane.layers.routes[path]

    async def quarantine(self, scope: Any, receive: Any, send: Any) -> None:
        if await self._refused(scope, send, "GET"):
            return
        body = {"quarantined": [verdict.to_dict() for verdict in self.integrity.quarantined()]}
        await _respond(send, 200, body)

    async def approve(self, scope: Any, receive: Any, send: Any) -> None:
        if await self._refused(scope, send, "POST"):
            return
        request = await _json_body(receive)
        upstream = request.get("upstream") if request is not None else None
        tool = request.get("tool") if request is not None else None
        digest = request.get("hash") if request is not None else None
        if not isinstance(upstream, str) or not isinstance(tool, str) or not isinstance(digest, str | None):
            await _error(send, 400, InvalidRequest("expected a JSON object with upstream, tool and (optional) hash"))
            return
        try:
            verdict = await self.integrity.approve(upstream, tool, digest)
        except ApprovalRefused as refused:
            if refused.current is not None:
                await _error(send, 409, MCPlaneError(refused.message, details={"current": refused.current}), "conflict")
            else:
                await _error(send, 404, NotFound(refused.message))
            return
        except MCPlaneError as exc:  # the state store: the approval is not recorded
            await _error(send, 503 if exc.retryable else 500, exc)
            return
        await _respond(send, 200, {"approved": verdict.to_dict()})

    async def _refused(self, scope: Any, send: Any, method: str) -> bool:
        """Answer (and return True) unless the request has ``method`` and an allowed principal."""
        if scope.get("method") != method:
            await _error(send, 405, InvalidRequest(f"use {method}"), extra=((b"allow", method.encode()),))
            return True
        authenticator = self.plane.layers.authenticator
        if authenticator is None:
            if self.admin.allow_anonymous:
                return False
            await _error(send, 403, Forbidden("the integrity endpoints need auth configured"))
            return True
        try:
            principal = await authenticator.authenticate(_credentials(scope, authenticator.config.api_key_header))
        except MCPlaneError as exc:
            status = 401 if isinstance(exc, Unauthenticated) else (503 if exc.retryable else 500)
            await _error(send, status, exc)
            return True
        if principal.anonymous and not self.admin.allow_anonymous:
            await _error(send, 401, Unauthenticated())
            return True
        if not principal.anonymous and not self._allowed(principal):
            await _error(send, 403, Forbidden("approving tools needs an integrity.admin role or scope"))
            return True
        return False

    def _allowed(self, principal: Principal) -> bool:
        return bool(principal.roles & set(self.admin.roles) or principal.scopes & set(self.admin.scopes))


def _credentials(scope: Mapping[str, Any], api_key_header: str | None) -> dict[str, str]:
    wanted = {"authorization"} | ({api_key_header.lower()} if api_key_header else set())
    found: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        name = bytes(raw_name).decode("latin-1").lower()
        if name in wanted:
            if name in found:  # which copy would count? refuse, as the MCP endpoint does
                return {"authorization": "invalid"}
            found[name] = bytes(raw_value).decode("latin-1")
    return found


async def _json_body(receive: Any) -> dict[str, Any] | None:
    """The request's JSON object, or ``None``: over :data:`MAX_BODY`, not JSON, not an object, or gone."""
    raw = await read_body(receive, MAX_BODY)
    if not raw:
        return None
    try:
        body: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None  # pyright: ignore[reportUnknownVariableType]


async def _error(
    send: Any, status: int, error: MCPlaneError, code: str | None = None, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    body = error.to_dict()
    if code is not None:
        body["code"] = code
    await _respond(send, status, {"error": body}, extra)


async def _respond(send: Any, status: int, body: Any, extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    payload = orjson.dumps(body)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})

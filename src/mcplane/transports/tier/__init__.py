"""The HTTP tier: small pure-ASGI layers in front of the MCP endpoint, composed in one function.

Each layer is a class in a module named after its concern; :func:`build_http_tier` puts them in
order. Layers share what they read through the scope, never through wrappers: the decoded
headers (:func:`~.headers.headers_of`) and a POST's body (:func:`~.body_cap.body_of`), each
made once per request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.types import ASGIApp

from mcplane.auth.http import AuthASGI
from mcplane.transports.tier.adoption import SessionAdoption
from mcplane.transports.tier.answers import not_running
from mcplane.transports.tier.body_cap import BodyCap
from mcplane.transports.tier.content_type import ContentType
from mcplane.transports.tier.drain import Drain
from mcplane.transports.tier.host_origin import HostOrigin
from mcplane.transports.tier.mcp_path import McpPath
from mcplane.transports.tier.probes import Probes
from mcplane.transports.tier.routes import ProviderRoutes

if TYPE_CHECKING:
    from mcplane.auth.authenticator import Authenticator
    from mcplane.transports.http import HTTPApp
    from mcplane.transports.sessions import SessionManager

__all__ = ["build_http_tier"]


def build_http_tier(http: HTTPApp, manager: SessionManager | None, authenticator: Authenticator | None) -> ASGIApp:
    """The HTTP tier in front of ``http``'s endpoints, outermost first:

    1. :class:`~.probes.Probes` ``/health``, ``/ready``, ``/metrics``: first, because the
       orchestrator addresses a pod by its IP, which no Host allow-list names;
    2. :class:`~.host_origin.HostOrigin`: before anything looks at credentials (a rebinding page
       must not get that far; authentication derives the resource URL from ``Host``);
    3. :class:`~.routes.ProviderRoutes`: endpoints a provider added (the gateway's
       ``/integrity/...``), which authenticate their own requests with their own credential;
    4. :class:`~mcplane.auth.http.AuthASGI` (when ``auth`` is configured): before any work is
       done for the request, and before the path check, as it serves the OAuth metadata paths;
    5. :class:`~.mcp_path.McpPath`: 404 elsewhere; a WebSocket upgrade forks off here (its
       frames are checked by the WebSocket transport, not by the layers below);
    6. :class:`~.content_type.ContentType`: 415 before a body that could never be served is read;
    7. :class:`~.body_cap.BodyCap`: 413 for a declared or counted body over the cap, the POST
       body read once and kept for the layers below;
    8. :class:`~.adoption.SessionAdoption`: a session opened by another replica is taken over
       before the drain check or the SDK looks it up (with the credential auth put in the scope);
    9. :class:`~.drain.Drain`: while draining, refuse new work (it reads the body the cap kept);
    10. the Streamable HTTP endpoint (hot path, then the SDK).

    Before the lifespan started and after it ended (``manager`` is ``None``) there is nothing to
    adopt into nor to serve with: 8 to 10 are one 503. The provider routes are the plane's as
    its lifespan made them, which is why the tier is built again when it starts.
    """
    options = http.options
    app: ASGIApp
    if manager is None:
        app = not_running
    else:
        app = http.http_endpoint
        app = Drain(app, http)
        app = SessionAdoption(app, manager)
    app = BodyCap(app, options.max_body_bytes)
    app = ContentType(app)
    app = McpPath(app, options.path, websocket=http.websocket_endpoint)
    if authenticator is not None:
        app = AuthASGI(app, authenticator, mcp_path=options.path, on_refused=http.refused)
    app = ProviderRoutes(app, http.plane.layers.routes)
    app = HostOrigin(app, http.guard, http.refused)
    return Probes(app, http)

"""The OpenAPI upstream: an ordinary gateway :class:`~mcplane.gateway.upstream.Upstream` whose
replicas are the API's base URLs and whose catalog is the document's operations.

Balancing, breakers, retries (annotation-driven), health checks, versions with canary, tool
pins, namespacing and list filtering therefore apply unchanged; only an attempt differs — an
HTTP request built from the tool's arguments (see :mod:`mcplane.openapi.rest`).

From code::

    from mcplane import Plane
    from mcplane.openapi import mount_openapi

    plane = Plane("billing-tools")
    mount_openapi(plane, "billing", {"spec": "billing.yaml", "base_url": "https://billing.internal/v1"},
                  timeout="5s", retries={"attempts": 3})
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from mcplane.errors import ConfigError, NotFound
from mcplane.gateway.config import HTTPEndpoint, UpstreamConfig
from mcplane.gateway.upstream import Catalog, Upstream
from mcplane.openapi.auth import ApiCredentials
from mcplane.openapi.config import OpenAPIConfig
from mcplane.openapi.rest import RestLink, RestReplica, call_operation

if TYPE_CHECKING:
    from mcplane.app import Plane
    from mcplane.gateway.endpoint import Link
    from mcplane.gateway.forward import Caller, Request
    from mcplane.gateway.provider import UpstreamProvider
    from mcplane.openapi.operations import API

__all__ = ["OpenAPIUpstream", "load_api", "mount_openapi"]


class OpenAPIUpstream(Upstream):
    def __init__(self, name: str, config: UpstreamConfig, **options: Any) -> None:
        super().__init__(name, config, **options)
        openapi = config.openapi
        assert openapi is not None
        self.openapi: OpenAPIConfig = openapi
        self.api: API = openapi.api
        self.credentials = ApiCredentials(openapi.auth)
        clock = options.get("clock")
        self.endpoints = [
            RestReplica(name, index, endpoint, config, openapi, clock=clock)
            for index, endpoint in enumerate(config.endpoints)
            if isinstance(endpoint, HTTPEndpoint)
        ]
        self.catalog = Catalog(tools={op.name: op.tool for op in self.api.operations.values()})

    async def send(self, link: Link, request: Request, meta: dict[str, Any], caller: Caller) -> Any:
        if request.method != "tools/call" or not isinstance(link, RestLink):
            raise NotFound(f"upstream {self.name!r} serves tools only ({request.method})")
        name = str(request.params.get("name"))
        operation = self.api.operations.get(name)
        if operation is None:
            raise NotFound(f"Unknown tool: {name}")
        arguments: Any = request.params.get("arguments") or {}
        return await call_operation(link, operation, arguments, meta, self.credentials, self.name)


def load_api(openapi: OpenAPIConfig | Mapping[str, Any]) -> API:
    """The tools an ``openapi:`` section yields (a :class:`ConfigError` naming the JSON pointer else)."""
    if isinstance(openapi, OpenAPIConfig):
        return openapi.api
    try:
        return OpenAPIConfig.model_validate(dict(openapi)).api
    except ValidationError as exc:
        raise _config_error("openapi", exc) from None


def mount_openapi(
    plane: Plane, name: str, openapi: OpenAPIConfig | Mapping[str, Any], **upstream: Any
) -> UpstreamProvider:
    """Serve the API's operations on ``plane`` as the upstream ``name`` (before the plane starts).

    ``openapi`` is the ``openapi:`` section; ``upstream`` any other upstream key (``timeout``,
    ``retries``, ``breaker``, ``namespace``, ``identity``, ...). Returns the provider added.
    """
    from mcplane.gateway.provider import UpstreamProvider

    section = openapi if isinstance(openapi, OpenAPIConfig) else dict(openapi)
    try:
        config = UpstreamConfig.model_validate({**upstream, "openapi": section})
    except ValidationError as exc:
        raise _config_error(f"upstreams.{name}", exc) from None
    provider = UpstreamProvider({name: config})
    plane.add_provider(provider)
    return provider


def _config_error(prefix: str, exc: ValidationError) -> ConfigError:
    first = exc.errors(include_url=False)[0]
    where = ".".join([prefix, *(str(p) for p in first["loc"])])
    message = str(first["msg"]).removeprefix("Value error, ")
    return ConfigError(f"{where}: {message}")

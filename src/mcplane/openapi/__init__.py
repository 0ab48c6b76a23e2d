"""OpenAPI upstreams: an API's OpenAPI document becomes gateway tools (see ``docs/openapi.md``).

In ``gateway.yaml``, an upstream with ``openapi:`` (see :mod:`mcplane.openapi.config`); from code,
:func:`mount_openapi` adds one to a :class:`~mcplane.Plane`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcplane.openapi.config import OpenAPIConfig

if TYPE_CHECKING:
    from mcplane.openapi.operations import API, Operation
    from mcplane.openapi.upstream import OpenAPIUpstream, load_api, mount_openapi

__all__ = ["API", "OpenAPIConfig", "OpenAPIUpstream", "Operation", "load_api", "mount_openapi"]


def __getattr__(name: str) -> Any:  # the gateway imports this package's config; the rest loads on use
    if name in ("OpenAPIUpstream", "load_api", "mount_openapi"):
        from mcplane.openapi import upstream

        return getattr(upstream, name)
    if name in ("API", "Operation"):
        from mcplane.openapi import operations

        return getattr(operations, name)
    raise AttributeError(name)

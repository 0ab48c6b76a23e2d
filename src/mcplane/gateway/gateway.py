"""``Gateway.from_config``: a :class:`~mcplane.Plane` whose tools come from upstreams.

::

    from mcplane.gateway import Gateway

    plane = Gateway.from_config("gateway.yaml")

    @plane.tool()                      # local tools mix with upstream ones
    def ping() -> str:
        return "pong"

    plane.run(transport="http", port=8000)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mcplane.app import Plane
from mcplane.gateway.config import GatewayConfig, load_gateway_config, parse_gateway_config
from mcplane.gateway.provider import UpstreamProvider

__all__ = ["Gateway"]


class Gateway:
    """Builds gateway planes; :meth:`provider_of` finds a plane's :class:`UpstreamProvider`."""

    @staticmethod
    def from_config(
        config: GatewayConfig | Mapping[str, Any] | str | Path,
        *,
        name: str = "mcplane-gateway",
        plane: Plane | None = None,
        **provider_options: Any,
    ) -> Plane:
        """A plane serving the upstreams of ``config`` (a ``gateway.yaml`` path, a parsed tree or a
        :class:`GatewayConfig`); pass ``plane`` to add them to an existing plane (before it starts)."""
        if isinstance(config, str | Path):
            config = load_gateway_config(config)
        elif not isinstance(config, GatewayConfig):
            config = parse_gateway_config(config)
        if plane is None:
            plane = Plane(config.plane.server.name or name, config=config.plane)
        else:
            plane.configure(config.plane)
        provider = UpstreamProvider(config, **provider_options)
        plane.add_provider(provider)
        return plane

    @staticmethod
    def provider_of(plane: Plane) -> UpstreamProvider:
        """The plane's upstream provider (added by :meth:`from_config`)."""
        for provider in plane.providers:
            if isinstance(provider, UpstreamProvider):
                return provider
        raise LookupError("this plane has no upstream provider")

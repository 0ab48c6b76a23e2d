"""``Gateway.from_config``: a :class:`~mcplane.Plane` whose tools come from upstreams.

::

    from mcplane.gateway import Gateway

    plane = Gateway.from_config("gateway.yaml")

    @plane.tool()                      # local tools mix with upstream ones
    def ping() -> str:
        return "pong"

    plane.run(transport="http", port=8000)

``Gateway.from_config("gateway.yaml", reload=True)`` also reloads the file while serving (on a
change, and on :meth:`~mcplane.gateway.reload.Reloader.request` — ``mcplane gateway`` wires SIGHUP
to it); see :mod:`mcplane.gateway.reload`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mcplane.app import Plane
from mcplane.errors import ConfigError
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
        reload: bool = False,
        **provider_options: Any,
    ) -> Plane:
        """A plane serving the upstreams of ``config`` (a ``gateway.yaml`` path, a parsed tree or a
        :class:`GatewayConfig`); pass ``plane`` to add them to an existing plane (before it starts).

        ``reload``: watch the file (``config`` must be its path) and apply its changes while serving.
        """
        path: Path | None = None
        if isinstance(config, str | Path):
            path = Path(config)
            config = load_gateway_config(path)
        elif reload:
            raise ConfigError("reload needs the config file's path")
        elif not isinstance(config, GatewayConfig):
            config = parse_gateway_config(config)
        if plane is None:
            plane = Plane(config.plane.server.name or name, config=config.plane)
        else:
            plane.configure(config.plane)
        provider = UpstreamProvider(config, **provider_options)
        provider.shared_state = config.shared_state  # breakers shared across replicas (mcplane.gateway.shared)
        if reload and path is not None:
            from mcplane.gateway.reload import Reloader

            provider.reloader = Reloader(path, provider, config)
        plane.add_provider(provider)
        if config.discovery.mode == "search":  # tools/list shows search_tools and call_tool
            from mcplane.gateway.search import CatalogSearch

            CatalogSearch(plane, config.discovery).install()
        return plane

    @staticmethod
    def provider_of(plane: Plane) -> UpstreamProvider:
        """The plane's upstream provider (added by :meth:`from_config`)."""
        for provider in plane.providers:
            if isinstance(provider, UpstreamProvider):
                return provider
        raise LookupError("this plane has no upstream provider")

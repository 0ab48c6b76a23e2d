"""The gateway (routing layer): downstream MCP servers federated behind one Plane.

A gateway is a server whose tools come from upstreams: :class:`UpstreamProvider` plugs into a
:class:`~mcplane.Plane` (``plane.add_provider``) so upstream calls pass through the same
pipeline as local ones. :meth:`Gateway.from_config` builds such a plane from ``gateway.yaml``.
"""

from mcplane.gateway.breaker import CircuitBreaker
from mcplane.gateway.config import SEPARATOR, GatewayConfig, UpstreamConfig, load_gateway_config, parse_gateway_config
from mcplane.gateway.gateway import Gateway
from mcplane.gateway.provider import UpstreamProvider

__all__ = [
    "SEPARATOR",
    "CircuitBreaker",
    "Gateway",
    "GatewayConfig",
    "UpstreamConfig",
    "UpstreamProvider",
    "load_gateway_config",
    "parse_gateway_config",
]

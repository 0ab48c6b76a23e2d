"""mcplane: the production plane for MCP tools and agents."""

from mcplane._version import __version__
from mcplane.app import Plane
from mcplane.client import Budget, Client, RetryPolicy, ToolFailed
from mcplane.config import PlaneConfig, load_config
from mcplane.context import ANONYMOUS, Context, Principal
from mcplane.dependencies import Inject
from mcplane.errors import (
    BudgetExceeded,
    CircuitOpen,
    ConfigError,
    DeadlineExceeded,
    DependencyUnavailable,
    Forbidden,
    InternalError,
    InvalidArguments,
    MCPlaneError,
    NotFound,
    RateLimited,
    Timeout,
    Unauthenticated,
    UpstreamError,
)
from mcplane.pipeline import Call, Pipeline
from mcplane.transports.websocket import websocket_client
from mcplane.types import NonBlank

__all__ = [
    "ANONYMOUS",
    "Budget",
    "BudgetExceeded",
    "Call",
    "CircuitOpen",
    "Client",
    "ConfigError",
    "Context",
    "DeadlineExceeded",
    "DependencyUnavailable",
    "Forbidden",
    "Inject",
    "InternalError",
    "InvalidArguments",
    "MCPlaneError",
    "NonBlank",
    "NotFound",
    "Pipeline",
    "Plane",
    "PlaneConfig",
    "Principal",
    "RateLimited",
    "RetryPolicy",
    "Timeout",
    "ToolFailed",
    "Unauthenticated",
    "UpstreamError",
    "__version__",
    "load_config",
    "websocket_client",
]

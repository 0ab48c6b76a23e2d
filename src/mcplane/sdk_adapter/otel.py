"""The SDK's own OpenTelemetry server middleware, which mcplane's tracing stands in for."""

from __future__ import annotations

from mcp.server._otel import OpenTelemetryMiddleware as SDKOpenTelemetryMiddleware  # pyright: ignore[reportPrivateUsage]

__all__ = ["SDKOpenTelemetryMiddleware"]

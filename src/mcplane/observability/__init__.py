"""Operations: structured logs, Prometheus metrics, OpenTelemetry tracing, and a served plane's lifecycle.

- :mod:`~mcplane.observability.logs`: JSON (or terminal text) log lines, one event per call
  and per lifecycle step;
- :mod:`~mcplane.observability.metrics`: the ``mcplane_*`` metric names and their exposition,
  including prometheus-client's multiprocess mode for several workers;
- :mod:`~mcplane.observability.tracing`: a span per call, W3C trace context in and out;
- :mod:`~mcplane.observability.middleware`: the ``metrics`` slot (counts, times, logs each call);
- :mod:`~mcplane.observability.lifecycle`: start, ready, draining, stopped; graceful shutdown;
- :mod:`~mcplane.observability.setup`: what the ``observability`` config section installs.

See docs/operations.md.
"""

from mcplane.observability.lifecycle import DrainGate, Lifecycle
from mcplane.observability.logs import configure_logging, lifecycle_event
from mcplane.observability.metrics import Metrics, default_metrics, scrape
from mcplane.observability.middleware import ObserveMiddleware
from mcplane.observability.setup import Observability, build_observability

__all__ = [
    "DrainGate",
    "Lifecycle",
    "Metrics",
    "Observability",
    "ObserveMiddleware",
    "build_observability",
    "configure_logging",
    "default_metrics",
    "lifecycle_event",
    "scrape",
]

"""The one boundary between mcplane and the official MCP SDK's internals.

mcplane is built on the ``mcp`` SDK and uses its public API everywhere it can. Where it needs
something the SDK does not make public, or copies SDK behaviour on a hot path for speed, that
use lives in this package and nowhere else, so upgrading the SDK means reading this package and
running its compatibility tests (``tests/sdk_compat``).

What mcplane relies on (each item names the module here that holds it):

- :mod:`~mcplane.sdk_adapter.streams`: ``mcp.shared._context_streams.create_context_streams``
  (memory streams that carry the sender's contextvars) and the ``ReadStream``/``WriteStream``
  protocols of ``mcp.shared._stream_protocols``.
- :mod:`~mcplane.sdk_adapter.otel`: the SDK's OpenTelemetry server middleware class
  (``mcp.server._otel``), recognised so mcplane's tracing replaces it rather than doubling spans.
"""

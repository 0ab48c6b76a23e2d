"""A stand-in OpenTelemetry collector: accepts OTLP/HTTP protobuf trace exports, counts them, drops them.

``POST /v1/traces`` parses the ``ExportTraceServiceRequest`` (so a malformed export is noticed),
counts its spans and answers ``200`` with an empty ``ExportTraceServiceResponse`` on a kept-alive
connection, as a collector does. ``GET /stats`` returns ``{"requests", "bytes", "spans",
"bad"}`` as JSON. Prints ``LISTENING <port>`` like the bench servers.
"""

from __future__ import annotations

import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

_lock = threading.Lock()
stats = {"requests": 0, "bytes": 0, "spans": 0, "bad": 0}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        spans, bad = 0, 0
        try:
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            request = ExportTraceServiceRequest.FromString(body)
            spans = sum(len(scope.spans) for rs in request.resource_spans for scope in rs.scope_spans)
        except Exception:  # a bad export is counted, never fatal
            bad = 1
        with _lock:
            stats["requests"] += 1
            stats["bytes"] += len(body)
            stats["spans"] += spans
            stats["bad"] += bad
        self._reply(400 if bad else 200, b"", "application/x-protobuf")

    def do_GET(self) -> None:
        with _lock:
            data = json.dumps(stats).encode()
        self._reply(200, data, "application/json")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    sys.stdout.write(f"LISTENING {server.server_address[1]}\n")
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

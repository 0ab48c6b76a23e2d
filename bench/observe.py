"""The observability leg's settings: metrics, structured call logs and tracing, each on or off.

Shared by the runner (``run.py``: per-run span sink and log directory, the checks), and the
server (``servers/mcplane_server.py --observability SETTING``: the
:class:`~mcplane.config.PlaneConfig` and the logging set up the way ``mcplane run`` does it).

Settings (``observability:`` section of ``mcplane.yaml``):

``off``      ``{log_level: warning, metrics: {enabled: false}}``: no metrics, no call logs, no spans
``metrics``  ``{log_level: warning}``: Prometheus metrics on every call (the default), no call logs
``logs``     ``{log_level: info, log_format: json}``: metrics and one JSON call-log line per call
             (what ``mcplane run`` does by default when stderr is not a terminal); tracing off
``all``      ``logs`` plus ``tracing: {enabled: true, otlp_endpoint: <the run's sink>}``: mcplane's
             own tracing setup, unchanged: an OpenTelemetry SDK ``TracerProvider``, a
             ``BatchSpanProcessor`` (SDK defaults: 512 spans a batch, 5 s delay, queue of 2048) and
             the OTLP/HTTP protobuf exporter, posting to ``servers/otlp_sink.py``, a collector
             stand-in on this machine that parses each export, counts its spans and drops them

Why a real exporter to a local sink rather than an in-process exporter that drops spans: the
export's CPU (protobuf encoding of each batch, the HTTP POST) runs in the span processor's
thread inside the server process, and competes with the event loop for the GIL, as it does in
production; a no-op exporter would hide that. The sink runs on the load generator's CPU and its
CPU time is not charged to the server (it is reported as the cell's helper CPU).

Call logs go where ``mcplane run`` sends them (stderr) in production; here each server writes
its JSON lines to ``calls-<pid>.jsonl`` in a temporary directory of the run (``MCPLANE_BENCH_LOG_DIR``)
with the same handler and formatter, one ``write`` per record, so the runner can count them. The
directory is deleted after the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SETTINGS: dict[str, dict[str, Any]] = {
    "off": {"log_level": "warning", "metrics": {"enabled": False}},
    "metrics": {"log_level": "warning"},
    "logs": {"log_level": "info", "log_format": "json"},
    "all": {"log_level": "info", "log_format": "json", "tracing": {"enabled": True}},
}
ENV_OTLP_ENDPOINT = "MCPLANE_BENCH_OTLP_ENDPOINT"
ENV_LOG_DIR = "MCPLANE_BENCH_LOG_DIR"
SINK = Path(__file__).resolve().parent / "servers" / "otlp_sink.py"


# ----------------------------------------------------------------------------- server side
def plane_config(setting: str) -> Any:
    """The :class:`~mcplane.config.PlaneConfig` of ``setting`` (validated like ``mcplane.yaml``)."""
    from mcplane.config import PlaneConfig

    section = json.loads(json.dumps(SETTINGS[setting]))  # a deep copy
    if "tracing" in section:
        section["tracing"]["otlp_endpoint"] = os.environ[ENV_OTLP_ENDPOINT]
        section["tracing"]["service_name"] = "mcplane-bench"
    return PlaneConfig.model_validate({"observability": section})


def configure_process_logging(config: Any) -> None:
    """What ``mcplane run`` does (``configure_process_logging``), into this run's log file instead of stderr."""
    from mcplane.observability import configure_logging

    section = config.observability
    log_dir = Path(os.environ.get(ENV_LOG_DIR) or tempfile.gettempdir())
    stream = (log_dir / f"calls-{os.getpid()}.jsonl").open("a", encoding="utf-8")
    configure_logging(section.log_level, section.log_format, stream=stream)


# ----------------------------------------------------------------------------- runner side
@dataclass
class ObservabilityEnv:
    log_dir: Path
    sink_pid: int
    sink_port: int
    totals: dict[str, int] = field(default_factory=dict)

    def sink_stats(self) -> dict[str, int]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.sink_port}/stats", timeout=10) as response:
            return json.loads(response.read())

    def call_log_records(self, pid: int) -> int:
        """Call events one server wrote (``"event":"call"`` lines of its file)."""
        path = self.log_dir / f"calls-{pid}.jsonl"
        with contextlib.suppress(OSError), path.open("rb") as f:
            return sum(1 for line in f if b'"event":"call"' in line)
        return 0

    def describe(self) -> dict[str, Any]:
        return dict(self.totals)


@contextlib.contextmanager
def observability_env(sink_cpu: int | None, log_path: Path) -> Iterator[ObservabilityEnv]:
    """Start the span sink (pinned to ``sink_cpu``), make the log directory; both gone afterwards."""
    from loadgen import pin_child

    saved = {name: os.environ.get(name) for name in (ENV_OTLP_ENDPOINT, ENV_LOG_DIR)}
    log_dir = Path(tempfile.mkdtemp(prefix="mcplane-bench-logs-"))
    with log_path.open("ab") as log:
        sink = subprocess.Popen(
            [sys.executable, str(SINK)], stdout=subprocess.PIPE, stderr=log, preexec_fn=pin_child(sink_cpu)
        )
    try:
        lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=lambda: lines.put(sink.stdout.readline() if sink.stdout else b""), daemon=True).start()
        try:
            first = lines.get(timeout=30)
        except queue.Empty:
            raise RuntimeError("the OTLP sink did not start within 30 s") from None
        if not first.startswith(b"LISTENING "):
            raise RuntimeError(f"the OTLP sink said {first!r}")
        env = ObservabilityEnv(log_dir=log_dir, sink_pid=sink.pid, sink_port=int(first.split()[1]))
        os.environ[ENV_OTLP_ENDPOINT] = f"http://127.0.0.1:{env.sink_port}"
        os.environ[ENV_LOG_DIR] = str(log_dir)
        try:
            yield env
        finally:
            with contextlib.suppress(OSError, ValueError):
                env.totals = env.sink_stats()
            env.totals["log_bytes"] = sum(f.stat().st_size for f in log_dir.glob("*.jsonl"))
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        sink.terminate()
        try:
            sink.wait(10)
        except subprocess.TimeoutExpired:
            sink.kill()
            sink.wait()
        shutil.rmtree(log_dir, ignore_errors=True)

"""The observability and gateway legs' report: ratios within one run (``--observability``, ``--gateway``)."""

from __future__ import annotations

from typing import Any

from report import _clean, _cpu_us, _delta, _fmt, _noisy, _pct, _ratio, _row, _x
from variants import (
    GATEWAY,
    HOP_TARGET_P50_MS,
    HOP_TARGET_THROUGHPUT,
    OBS_BASE,
    OBSERVABILITY,
    VARIANT_BY_KEY,
)

OBS_LABELS = {
    "obs-off": "off",
    "obs-metrics": "metrics",
    "obs-logs": "metrics + call logs (tracing off)",
    "obs-all": "metrics + call logs + tracing (all on)",
}


def observability_rows(rows: list[dict[str, Any]], legs: list[str], concurrency: list[int]) -> list[dict[str, Any]]:
    """Each observability setting ÷ everything off, per leg and concurrency (same run)."""
    out = []
    for leg in legs:
        for conc in concurrency:
            base = _row(rows, leg, OBS_BASE, conc)
            if base is None:
                continue
            for key in OBSERVABILITY:
                row = _row(rows, leg, key, conc)
                if row is None:
                    continue
                check = row.get("observed") or {}
                requests = check.get("requests") or 0
                out.append(
                    {
                        "leg": leg,
                        "concurrency": conc,
                        "server": key,
                        "calls_per_s": _ratio(row["calls_per_s"], base["calls_per_s"]),
                        "p50": _ratio(row["p50_ms"], base["p50_ms"]),
                        "p99": _ratio(row["p99_ms"], base["p99_ms"]),
                        "cpu_us": _cpu_us(row),
                        "base_cpu_us": _cpu_us(base),
                        "spans_per_request": check.get("spans", 0) / requests if requests else None,
                        "logs_per_request": check.get("log_records", 0) / requests if requests else None,
                        "clean": _clean(row) and _clean(base),
                        "noisy": _noisy(row) or _noisy(base),
                    }
                )
    return out


def hop_rows(rows: list[dict[str, Any]], legs: list[str], concurrency: list[int]) -> list[dict[str, Any]]:
    """Each proxy against the upstream direct, per leg: added latency at the lowest concurrency, ÷ at the highest."""
    out = []
    low, high = min(concurrency), max(concurrency)
    for leg in legs:
        for key in GATEWAY:
            direct = VARIANT_BY_KEY[key].upstream
            if direct is None:
                continue
            direct_low, hop_low = _row(rows, leg, direct, low), _row(rows, leg, key, low)
            direct_high, hop_high = _row(rows, leg, direct, high), _row(rows, leg, key, high)
            if (hop_low is None or direct_low is None) and (hop_high is None or direct_high is None):
                continue
            entry: dict[str, Any] = {"leg": leg, "server": key, "direct": direct, "low": low, "high": high}
            if hop_low is not None and direct_low is not None:
                entry |= {
                    "direct_p50": direct_low["p50_ms"],
                    "hop_p50": hop_low["p50_ms"],
                    "direct_p99": direct_low["p99_ms"],
                    "hop_p99": hop_low["p99_ms"],
                    "added_p50": hop_low["p50_ms"] - direct_low["p50_ms"],
                    "added_p99": hop_low["p99_ms"] - direct_low["p99_ms"],
                    "hop_cpu_us_low": _cpu_us(hop_low),
                }
            if hop_high is not None and direct_high is not None:
                entry |= {
                    "calls_per_s": _ratio(hop_high["calls_per_s"], direct_high["calls_per_s"]),
                    "hop_calls_per_s": hop_high["calls_per_s"],
                    "direct_calls_per_s": direct_high["calls_per_s"],
                    "hop_cpu_us": _cpu_us(hop_high),
                    "direct_cpu_us": _cpu_us(direct_high),
                    "upstream_cpu": hop_high.get("aux_cpu_util"),
                }
            pair = [r for r in (direct_low, hop_low, direct_high, hop_high) if r is not None]
            entry["clean"] = all(_clean(r) for r in pair)
            entry["noisy"] = any(_noisy(r) for r in pair)
            out.append(entry)
    return out


def _goal(value: float | None, ok: bool) -> str:
    return "" if value is None else (" ✓" if ok else " ✗")


def _flags(entry: dict[str, Any]) -> str:
    return ("" if entry["clean"] else " ⚠") + (" (noisy)" if entry["noisy"] else "")


def render_observability(meta: dict[str, Any], obs: list[dict[str, Any]]) -> list[str]:
    if not obs:
        return []
    lines = [
        "## Observability on ÷ off (same run)",
        "",
        "The same echo `Plane` under `mcplane run`'s logging setup with each `observability:` setting "
        "(`bench/observe.py`): **off** = `metrics.enabled: false`, `log_level: warning`; **metrics** = Prometheus "
        "metrics only; **call logs** = one JSON line per call (`log_level: info`, the `mcplane run` default), "
        "written to a file; **tracing** = mcplane's own setup: OpenTelemetry SDK `TracerProvider`, "
        "`BatchSpanProcessor` (SDK defaults), OTLP/HTTP protobuf exporter posting to a collector stand-in on this "
        "machine (`servers/otlp_sink.py`, pinned to the load generator's CPU, its CPU not charged to the server). "
        "Ratios are setting ÷ off: calls/s below 1 and latencies above 1 are the cost. CPU µs/call = server CPU per "
        "answered call; Δ = minus off. spans, log lines per request = what the server run exported / wrote per "
        "request sent (warm-ups and readiness probes included, so ≈ 1.00 means every call was observed).",
        "",
        "| leg | conc | setting | calls/s ÷ off | p50 ÷ off | p99 ÷ off | CPU µs/call | Δ CPU µs/call "
        "| spans / request | log lines / request |",
        "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for e in obs:
        if e["server"] == OBS_BASE:
            lines.append(
                f"| {e['leg']}{_flags(e)} | {e['concurrency']} | {OBS_LABELS[e['server']]} | 1 | 1 | 1 "
                f"| {_fmt(e['cpu_us'], 0)} | | {_fmt(e['spans_per_request'], 2)} | {_fmt(e['logs_per_request'], 2)} |"
            )
            continue
        lines.append(
            f"| {e['leg']}{_flags(e)} | {e['concurrency']} | {OBS_LABELS[e['server']]} | **{_x(e['calls_per_s'])}** "
            f"| {_x(e['p50'])} | {_x(e['p99'])} | {_fmt(e['cpu_us'], 0)} | {_delta(e['cpu_us'], e['base_cpu_us'])} "
            f"| {_fmt(e['spans_per_request'], 2)} | {_fmt(e['logs_per_request'], 2)} |"
        )
    totals = meta.get("observability") or {}
    if totals:
        lines += [
            "",
            f"The collector stand-in received {totals.get('requests', 0):,} OTLP export requests "
            f"({totals.get('bytes', 0) / 1e6:,.1f} MB, {totals.get('spans', 0):,} spans, {totals.get('bad', 0)} "
            f"malformed); the servers wrote {totals.get('log_bytes', 0) / 1e6:,.1f} MB of call logs (deleted after "
            "the run).",
        ]
    lines += [
        "",
        "With `tracing.enabled: false` the `tracing` slot of the pipeline is empty (no tracer, no span, no "
        "context lookup per call), so the cost of tracing when it is off is nothing beyond the metrics + call logs "
        "row; the all-on row minus that row is what turning tracing on costs.",
        "",
    ]
    return lines


def render_gateway(hops: list[dict[str, Any]]) -> list[str]:
    if not hops:
        return []
    low, high = hops[0]["low"], hops[0]["high"]
    lines = [
        "## One gateway hop (proxy ÷ direct, same run)",
        "",
        "Client → proxy → an upstream (Streamable HTTP): the bare echo `Plane`, or the SDK's best configuration "
        "for `hop-mcplane-sdk`, against the client → the same upstream direct. "
        "The proxy is pinned to the server CPU; its upstream shares the load generator's CPU (its CPU use is shown; "
        "it is not counted as other processes'); direct, the `Plane` has the server CPU to itself, as in the main "
        f"bench. Added latency = hop minus direct at concurrency {low}; throughput = calls/s through the proxy ÷ "
        f"direct at concurrency {high}. proxy CPU µs/call = the proxy process's CPU per call (its own cost, upstream "
        f"excluded). Goal for mcplane (reported, not asserted): the hop adds ≤ {HOP_TARGET_P50_MS:g} ms p50 and keeps "
        f"≥ {HOP_TARGET_THROUGHPUT:.0%} of direct throughput.",
        "",
        f"| leg | proxy | upstream | p50 direct → hop ms (c={low}) | added p50 ms | p99 direct → hop ms | added p99 ms "
        f"| calls/s ÷ direct (c={high}) | proxy CPU µs/call (c={low} / c={high}) | upstream CPU (c={high}) |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for e in hops:
        mine = VARIANT_BY_KEY[e["server"]].script == "gateway_server.py"
        added = e.get("added_p50")
        ratio = e.get("calls_per_s")
        hit_p50 = _goal(added, added is not None and added <= HOP_TARGET_P50_MS) if mine else ""
        hit_tp = _goal(ratio, ratio is not None and ratio >= HOP_TARGET_THROUGHPUT) if mine else ""
        lines.append(
            f"| {e['leg']}{_flags(e)} | {e['server']} | {e['direct']} "
            f"| {_fmt(e.get('direct_p50'), 3)} → {_fmt(e.get('hop_p50'), 3)} "
            f"| **{_fmt(added, 3)}**{hit_p50} | {_fmt(e.get('direct_p99'), 3)} → {_fmt(e.get('hop_p99'), 3)} "
            f"| {_fmt(e.get('added_p99'), 3)} | **{_x(ratio)}**{hit_tp} "
            f"| {_fmt(e.get('hop_cpu_us_low'), 0)} / {_fmt(e.get('hop_cpu_us'), 0)} | {_pct(e.get('upstream_cpu'))} |"
        )
    lines.append("")
    return lines

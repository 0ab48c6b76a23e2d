"""Rendering a bench run: versions, ratios and the markdown report (``RESULTS.md``)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any

from variants import (
    BENCH,
    FULL_TARGET,
    LEGS,
    NOISY,
    PIPELINE_NOTES,
    SWEEP,
    TARGET_RATIO,
    VARIANT_BY_KEY,
    VARIANTS,
)


# ----------------------------------------------------------------------------- reporting
def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for dist in (
        "mcplane",
        "mcp",
        "mcp-types",
        "fastmcp",
        "uvicorn",
        "starlette",
        "uvloop",
        "httptools",
        "orjson",
        "pydantic",
    ):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = "not installed"
    return found


def source_state() -> str:
    """The mcplane checkout measured: commit, and whether src/ differs from it (read-only git calls)."""
    root = BENCH.parent

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "--no-optional-locks", "-C", str(root), *args], capture_output=True, text=True, check=False
        )

    try:
        head = git("rev-parse", "--short", "HEAD")
        if head.returncode != 0:
            return "unknown (not a git checkout)"
        dirty = git("diff", "--quiet", "HEAD", "--", "src").returncode != 0
        untracked = bool(git("ls-files", "--others", "--exclude-standard", "--", "src").stdout.strip())
    except OSError:
        return "unknown (no git)"
    state = " + uncommitted changes in src/" if dirty or untracked else ""
    return f"commit {head.stdout.strip()}{state}"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None or value != value:  # None or NaN
        return "n/a"
    return f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _ratio(a: float | None, b: float | None) -> float | None:
    if not a or not b:
        return None
    return a / b


def _clean(row: dict[str, Any] | None) -> bool:
    return row is not None and "failed" not in row and row.get("errors", 0) == 0


def _noisy(row: dict[str, Any] | None) -> bool:
    return row is not None and (row.get("foreign_cpu_util") or 0.0) > NOISY


def ratios(rows: list[dict[str, Any]], legs: list[str], concurrency: list[int]) -> list[dict[str, Any]]:
    out = []
    for leg in legs:
        for conc in concurrency:
            here = [r for r in rows if r["leg"] == leg and r["concurrency"] == conc and "failed" not in r]

            def by_role(role: str, rows_here: list[dict[str, Any]] = here) -> list[dict[str, Any]]:
                return [r for r in rows_here if r["role"] == role]

            mine = next(iter(by_role("mcplane")), None)
            if mine is None:
                continue
            entry: dict[str, Any] = {"leg": leg, "concurrency": conc, "mcplane_clean": _clean(mine)}
            for role in ("sdk", "fastmcp", "floor"):
                candidates = by_role(role)
                if not candidates:
                    continue
                best = max(candidates, key=lambda r: r["calls_per_s"])
                best_eff = max(candidates, key=lambda r: r.get("calls_per_cpu_s") or 0)
                entry[role] = {
                    "server": best["server"],
                    "calls_per_s": _ratio(mine["calls_per_s"], best["calls_per_s"]),
                    "calls_per_cpu_s": _ratio(mine.get("calls_per_cpu_s"), best_eff.get("calls_per_cpu_s")),
                    "clean": _clean(best) and _clean(best_eff),
                    "noisy": _noisy(best) or _noisy(best_eff),
                }
            if not any(role in entry for role in ("sdk", "fastmcp", "floor")):
                continue  # nothing to compare with in this run (e.g. --sweep)
            entry["noisy"] = _noisy(mine) or any(entry[r]["noisy"] for r in ("sdk", "fastmcp", "floor") if r in entry)
            out.append(entry)
    return out


def _row(rows: list[dict[str, Any]], leg: str, server: str, conc: int) -> dict[str, Any] | None:
    for r in rows:
        if r["leg"] == leg and r["server"] == server and r["concurrency"] == conc and "failed" not in r:
            return r
    return None


def _cpu_us(row: dict[str, Any] | None) -> float | None:
    """Server CPU per call in µs (calls/CPU-s inverted)."""
    eff = row.get("calls_per_cpu_s") if row is not None else None
    return 1e6 / eff if eff else None


def _delta(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None else f"{a - b:+,.0f}"


def full_ratios(rows: list[dict[str, Any]], legs: list[str], concurrency: list[int]) -> list[dict[str, Any]]:
    """Each full-pipeline variant ÷ bare mcplane, per leg and concurrency (same run)."""
    out = []
    for leg in legs:
        for conc in concurrency:
            bare = _row(rows, leg, "mcplane", conc)
            if bare is None:
                continue
            for variant in VARIANTS:
                if variant.role != "full":
                    continue
                full = _row(rows, leg, variant.key, conc)
                if full is None:
                    continue
                out.append(
                    {
                        "leg": leg,
                        "concurrency": conc,
                        "server": variant.key,
                        "calls_per_s": _ratio(full["calls_per_s"], bare["calls_per_s"]),
                        "calls_per_cpu_s": _ratio(full.get("calls_per_cpu_s"), bare.get("calls_per_cpu_s")),
                        "bare_cpu_us": _cpu_us(bare),
                        "full_cpu_us": _cpu_us(full),
                        "bare_p50_ms": bare["p50_ms"],
                        "full_p50_ms": full["p50_ms"],
                        "clean": _clean(bare) and _clean(full),
                        "noisy": _noisy(bare) or _noisy(full),
                    }
                )
    return out


def render_pipeline(meta: dict[str, Any], rows: list[dict[str, Any]], full_rows: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    if full_rows:
        lines += [
            "## Full pipeline (mcplane-full ÷ bare mcplane, same run)",
            "",
            "`mcplane-full` = the same echo `Plane` plus JWT HS256 auth (every request carries a valid "
            "`Authorization: Bearer` token), authorization (a role rule for `echo`, default deny), a rate limit "
            "on Redis that never triggers (`1000000/second`, scope principal: one GCRA script round trip per call) "
            "and audit to a JSONL file with `fsync: interval` (at most one fsync per second: a machine crash can lose "
            "the last second of records, a process crash loses nothing). `mcplane-full-fsync` is the same with "
            "`fsync: always` (one fsync per record, i.e. two per call); `mcplane-full-lease` the same as "
            "`mcplane-full` with a leased allowance on the rate limit (`lease: {max: 64, ttl: 1s}`: calls taken from "
            f"Redis in batches and spent in process). Target ≥ {FULL_TARGET}\u00d7. CPU µs/call = "
            "server CPU per answered call (calls/CPU-s inverted).",
            "",
            "| leg | conc | server | ÷ bare calls/s | ÷ bare calls/CPU-s | bare CPU µs/call | full CPU µs/call "
            "| added µs/call | p50 bare → full ms |",
            "|---|--:|---|--:|--:|--:|--:|--:|--:|",
        ]
        for e in full_rows:
            hit = ""
            if e["calls_per_s"] is not None and e["server"] in ("mcplane-full", "mcplane-full-lease"):
                hit = " ✓" if e["calls_per_s"] >= FULL_TARGET else " ✗"
            flag = "" if e["clean"] else " ⚠"
            if e["noisy"]:
                flag += " (noisy)"
            lines.append(
                f"| {e['leg']}{flag} | {e['concurrency']} | {e['server']} | **{_x(e['calls_per_s'])}**{hit} "
                f"| {_x(e['calls_per_cpu_s'])} | {_fmt(e['bare_cpu_us'], 0)} | {_fmt(e['full_cpu_us'], 0)} "
                f"| {_delta(e['full_cpu_us'], e['bare_cpu_us'])} | {_fmt(e['bare_p50_ms'], 3)} → "
                f"{_fmt(e['full_p50_ms'], 3)} |"
            )
        pipeline = meta.get("pipeline") or {}
        if pipeline:
            lines += [
                "",
                f"Audit files on a `{pipeline.get('audit_filesystem')}` filesystem "
                f"({pipeline.get('audit_records', 0):,} records, {pipeline.get('audit_bytes', 0) / 1e6:,.1f} MB "
                f"written in the run, then deleted); Redis keys of the run deleted afterwards: "
                f"{pipeline.get('redis_keys_deleted', 0)} (GCRA keys expire within milliseconds at this limit).",
            ]
        lines += ["", PIPELINE_NOTES, ""]
    ordered = [VARIANT_BY_KEY[key] for key in SWEEP] + [v for v in VARIANTS if v.key not in SWEEP]
    sweep = [v for v in ordered if v.base is not None and any(r["server"] == v.key for r in rows)]
    if any(v.role == "layer" for v in sweep):
        lines += [
            "## Layer sweep (one layer at a time)",
            "",
            "Each row adds one layer to the row named in *vs*; Δ = this row minus that row, in server CPU µs "
            "per call (calls/CPU-s inverted: the cost the layer adds to the server) and in p50 latency "
            "(what a caller waits, Redis round trip included). At concurrency 32 the server is CPU-bound, so the "
            "CPU column is the layer's cost; differences of a few µs are within run-to-run noise.",
            "",
            "| leg | conc | server | adds | vs | calls/s | CPU µs/call | Δ CPU µs/call | p50 ms | Δ p50 µs |",
            "|---|--:|---|---|---|--:|--:|--:|--:|--:|",
        ]
        for leg in meta["legs"]:
            for conc in meta["concurrency"]:
                bare = _row(rows, leg, "mcplane", conc)
                if bare is not None:
                    lines.append(
                        f"| {leg}{' ⚠' if _noisy(bare) else ''} | {conc} | mcplane | (bare) | | "
                        f"{_fmt(bare['calls_per_s'], 0)} | {_fmt(_cpu_us(bare), 0)} | | {_fmt(bare['p50_ms'], 3)} | |"
                    )
                for v in sweep:
                    row = _row(rows, leg, v.key, conc)
                    if row is None:
                        continue
                    base = _row(rows, leg, v.base or "", conc)
                    p50_delta = _delta(row["p50_ms"] * 1000, base["p50_ms"] * 1000) if base is not None else "n/a"
                    noisy = " ⚠" if _noisy(row) or _noisy(base) else ""
                    lines.append(
                        f"| {leg}{noisy} | {conc} | {v.key} | {v.adds} | {v.base} | {_fmt(row['calls_per_s'], 0)} "
                        f"| {_fmt(_cpu_us(row), 0)} | {_delta(_cpu_us(row), _cpu_us(base))} "
                        f"| {_fmt(row['p50_ms'], 3)} | {p50_delta} |"
                    )
        lines.append("")
    return lines


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}\u00d7"  # multiplication sign


def render(
    meta: dict[str, Any],
    rows: list[dict[str, Any]],
    ratio_rows: list[dict[str, Any]],
    full_rows: list[dict[str, Any]] | None = None,
    extra: list[str] | None = None,
) -> str:
    """The markdown report; ``extra``: sections (the observability and gateway legs') after the pipeline's."""
    v = meta["versions"]
    lines = [
        "# mcplane bench results",
        "",
        f"`tools/call` of a trivial `echo` tool (`text: str` → same text). Generated by `{meta['command']}` "
        f"on {meta['date']}.",
        "",
        f"- **Machine**: {meta['cpu_count']} CPUs ({meta['cpu_model']}), Linux {platform.release()}; "
        f"server pinned to CPU {meta['server_cpu']}, load generator to CPU {meta['load_cpu']}.",
        f"- **Versions**: python {v['python']}, mcp {v['mcp']} (mcp-types {v['mcp-types']}), fastmcp {v['fastmcp']}, "
        f"mcplane {v['mcplane']}, uvicorn {v['uvicorn']}, starlette {v['starlette']}, uvloop {v['uvloop']}, "
        f"httptools {v['httptools']}, orjson {v['orjson']}, pydantic {v['pydantic']}; mcplane source: "
        f"{meta['source']}.",
        f"- **Method**: {meta['warmup']:g} s warm-up then a {meta['duration']:g} s measured window per cell, "
        f"{meta['repeat']} round(s) (per cell the median of its quiet rounds); HTTP servers under uvicorn "
        "with uvloop + httptools at log level "
        "warning; every response checked (HTTP 200, id, echoed text, no error).",
        *(
            [
                "- **Re-measured**: "
                + "; ".join(
                    f"{len(r['cells'])} leg/server pair(s) with no quiet round measured again at {r['date']} "
                    f"({', '.join('/'.join(c) for c in r['cells'])})"
                    for r in meta["reruns"]
                )
                + " (`--rerun-noisy`); their extra rounds count like the others."
            ]
            if meta.get("reruns")
            else []
        ),
        "- **Columns**: calls/s = answered calls in the window ÷ wall time; calls/CPU-s = the same calls ÷ the "
        "server process's CPU seconds (utime+stime) over the window — the efficiency number that survives a slow "
        "or saturated load generator; srv/load = CPU use of the server / load generator over the window (≈100% "
        "srv: server-bound; ≈100% load: the generator is the limit, trust calls/CPU-s); other procs = CPU the rest of "
        "the machine took from the two pinned CPUs during the window (100% = one whole CPU; "
        f"⚠ over {NOISY:.0%}: that cell and its ratios "
        "are disturbed; re-run on a quiet machine or with `--repeat`).",
        "",
    ]
    problems = [r for r in rows if not _clean(r)]
    if problems:
        lines.append("**⚠ Flagged cells (errors or failures — their numbers are not trustworthy):**")
        lines.append("")
        for r in problems:
            what = r.get("failed") or f"{r['errors']} errors, e.g. {r['error_samples'][:2]}"
            lines.append(f"- {r['leg']} / {r['server']} / c={r['concurrency']}: {what}")
        lines.append("")
    else:
        lines += ["All cells error-free.", ""]
    noisy = [r for r in rows if _noisy(r)]
    if noisy:
        lines += [
            f"**⚠ {len(noisy)} of {len(rows)} cells ran while other processes took more than {NOISY:.0%} of the "
            "pinned CPUs** (marked below); their absolute numbers, and the ratios built on them, are disturbed.",
            "",
        ]

    if ratio_rows:
        lines += [
            "## Ratios (mcplane ÷ reference, same run)",
            "",
            "SDK best = the faster of the SDK's default and best configurations in that cell "
            "(target ≥ "
            + ", ".join(f"{v:g}\u00d7 on {k}" for k, v in TARGET_RATIO.items())
            + "); calls/CPU-s ratios compare against the most efficient reference configuration.",
            "",
            "| leg | conc | ÷ SDK best calls/s | ÷ SDK best calls/CPU-s | SDK best is | ÷ FastMCP calls/s "
            "| ÷ FastMCP calls/CPU-s | ÷ floor calls/s | ÷ floor calls/CPU-s |",
            "|---|--:|--:|--:|---|--:|--:|--:|--:|",
        ]
        for e in ratio_rows:
            sdk, fast, floor = e.get("sdk", {}), e.get("fastmcp", {}), e.get("floor", {})
            hit = ""
            if sdk.get("calls_per_s") is not None:
                hit = " ✓" if sdk["calls_per_s"] >= TARGET_RATIO.get(e["leg"], 2.0) else " ✗"
            flag = "" if e["mcplane_clean"] and all(r.get("clean", True) for r in (sdk, fast, floor)) else " ⚠"
            if e.get("noisy"):
                flag += " (noisy)"
            lines.append(
                f"| {e['leg']}{flag} | {e['concurrency']} | **{_x(sdk.get('calls_per_s'))}**{hit} "
                f"| {_x(sdk.get('calls_per_cpu_s'))} | {sdk.get('server', 'n/a')} "
                f"| {_x(fast.get('calls_per_s'))} | {_x(fast.get('calls_per_cpu_s'))} "
                f"| {_x(floor.get('calls_per_s'))} | {_x(floor.get('calls_per_cpu_s'))} |"
            )
        lines.append("")
    lines += render_pipeline(meta, rows, full_rows or [])
    lines += extra or []
    order = {v.key: i for i, v in enumerate(VARIANTS)}
    for leg in meta["legs"]:
        leg_rows = sorted((r for r in rows if r["leg"] == leg), key=lambda r: (order[r["server"]], r["concurrency"]))
        if not leg_rows:
            continue
        lines += [
            f"## {leg}: {LEGS[leg]}",
            "",
            "| server | conc | calls/s | calls/CPU-s | p50 ms | p99 ms | srv CPU | load CPU | other procs | errors "
            "| configuration |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
        ]
        for r in leg_rows:
            if "failed" in r:
                lines.append(
                    f"| {r['server']} | {r['concurrency']} | FAILED | | | | | | | ⚠ | {r['config']} — {r['failed']} |"
                )
                continue
            errors = f"**{r['errors']}** ⚠" if r["errors"] else "0"
            lines.append(
                f"| {r['server']} | {r['concurrency']} | {_fmt(r['calls_per_s'], 0)} | {_fmt(r['calls_per_cpu_s'], 0)} "
                f"| {_fmt(r['p50_ms'], 3)} | {_fmt(r['p99_ms'], 3)} | {_pct(r['server_cpu_util'])} "
                f"| {_pct(r['load_cpu_util'])} | {_pct(r.get('foreign_cpu_util'))}{' ⚠' if _noisy(r) else ''} "
                f"| {errors} | {r['config']} |"
            )
        lines.append("")
    lines += [
        "Absolute numbers depend on the machine and whatever else runs on it; compare servers only within one run. "
        "See `bench/README.md`; the observability and gateway-hop legs (`--observability`, `--gateway`) report to "
        "`bench/RESULTS-overhead.md`.",
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main

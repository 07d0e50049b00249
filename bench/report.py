"""Outputs of a run: Markdown report (with machine info), JSON, and the console summary."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .metrics import REGISTRY, Measurement, MetricValue, Results

PACKAGES = ("miniodb", "pyarrow", "duckdb", "adbc-driver-flightsql", "adbc-driver-manager", "polars",
            "uvicorn", "starlette", "httpx", "orjson", "numpy", "matplotlib", "rich")


def machine_info() -> dict:
    import psutil

    info: dict = {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "versions": {},
    }
    for p in PACKAGES:
        try:
            info["versions"][p] = version(p)
        except PackageNotFoundError:
            pass
    commit = _git_commit()
    if commit:
        info["git_commit"] = commit
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    if out.returncode != 0:
        return ""
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


# -- formatting ----------------------------------------------------------------------------
def fmt_number(v: float | None, unit: str = "") -> str:
    if v is None:
        return "n/a"
    if unit == "x":
        return f"{v:.2f}x"
    if unit in ("ms",):
        return f"{v:,.2f} ms"
    if abs(v) >= 100:
        s = f"{v:,.0f}"
    elif abs(v) >= 10:
        s = f"{v:,.1f}"
    else:
        s = f"{v:,.2f}"
    return f"{s} {unit}".strip()


def fmt_metric(mv: MetricValue) -> str:
    return fmt_number(mv.value, mv.spec.unit)


def verdict(mv: MetricValue) -> str:
    ok = mv.spec.meets(mv.value)
    return "" if ok is None else ("✅" if ok else "❌")


def _ms(v: float | None) -> str:
    return "" if v is None else f"{v * 1000:,.2f}"


def _num(v: float | None, digits: int = 0) -> str:
    return "" if v is None else f"{v:,.{digits}f}"


def versus(ours: Measurement, base: Measurement) -> str:
    """MinIODB relative to one baseline of the same workload, in the workload's own terms."""
    if ours.latencies and base.latencies:
        a, b = ours.latency(50), base.latency(50)
        return f"p50 {a / b:.2f}x" if a and b else ""
    if ours.nbytes and ours.rows_per_s and base.rows_per_s:
        return f"rows/s {ours.rows_per_s / base.rows_per_s:.2f}x"
    a, b = ours.median_seconds, base.median_seconds
    return f"time {a / b:.2f}x" if a and b else ""


def measurement_row(m: Measurement, results: Results) -> list[str]:
    if m.baseline:
        ours = next((x for x in results.measurements if x.workload == m.workload and not x.baseline), None)
        ratios = f"MinIODB {versus(ours, m)}" if ours is not None and versus(ours, m) else ""
    else:
        ratios = "; ".join(f"`{n}` = {fmt_metric(results.metrics[n])}" for n in m.ratios
                           if n in results.metrics and REGISTRY[n].is_ratio)
    median = m.median_seconds
    return [
        m.title, m.label, _num(m.rows) if m.rows else "",
        "" if median is None or m.latencies else f"{median:,.3f}",
        _num(m.rows_per_s), _num(m.mb_per_s, 1),
        _ms(m.latency(50)), _ms(m.latency(95)), _ms(m.latency(99)),
        ratios,
    ]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return out


def markdown(results: Results) -> str:
    meta = results.meta
    machine = meta.get("machine", {})
    lines = ["# MinIODB benchmark results", ""]
    lines.append(f"Command: `{meta.get('command', 'miniodb bench')}`  ")
    lines.append(f"Run at {meta.get('started_at', '')} UTC, took {meta.get('seconds', 0):,.0f} s; "
                 f"every timed phase ran {meta.get('repeat', 1)}x, MinIODB and its baseline interleaved "
                 "(alternating which goes first), medians reported.")
    lines += ["", "## Named results", "",
              "Stable names: compare them across versions. Ratios are MinIODB relative to a baseline run "
              "side by side in the same run; *better* says which direction is good.", ""]
    rows = []
    for mv in results.ordered_metrics():
        s = mv.spec
        value = fmt_metric(mv)
        if mv.value is None and mv.detail.get("reason"):
            value = f"n/a ({mv.detail['reason']})"
        rows.append([f"`{mv.name}`", value, s.better, s.target_text(), verdict(mv), s.description])
    lines += _table(["name", "value", "better", "target", "", "what"], rows)
    lines += ["", "## Measurements", "",
              "rows/s for queries = table rows scanned per second of median time; MB/s = Arrow bytes "
              "(JSON bytes for REST); latency percentiles are medians over the repeats. The last column "
              "gives, on a MinIODB row, its named ratios, and on a baseline row, MinIODB relative to that "
              "baseline (rows/s: higher is better; time and p50: lower is better).", ""]
    lines += _table(["workload", "system", "rows", "median s", "rows/s", "MB/s", "p50 ms", "p95 ms", "p99 ms",
                     "ratios"], [measurement_row(m, results) for m in results.measurements])
    lines += ["", "## Setup", ""]
    node = meta.get("node", {})
    if node:
        lines.append(f"- Node: {node.get('mode', '')}; version {node.get('version', '?')}"
                     + (f"; {node['settings']}" if node.get("settings") else ""))
    opts = meta.get("options", {})
    if opts:
        lines.append("- Options: " + ", ".join(f"{k}={v}" for k, v in opts.items()))
    lines.append("- Data: deterministic seeded generators (numpy), nothing downloaded. Narrow table: "
                 "k int64 (1000 keys), a int64, b float64, c float64. Wide table: 16 lineitem-like columns "
                 "(float64 decimals, low-cardinality flags, 3 date columns, comments).")
    lines.append("- Baselines: raw pyarrow.flight server (receive/return only), DuckDB in-process over the "
                 "same Parquet files, minimal Flight SQL server over in-memory DuckDB, bare ASGI JSON "
                 "endpoint under uvicorn. Servers run as separate processes on this machine.")
    for n in results.notes:
        lines.append(f"- {n}")
    lines += ["", "## Machine", ""]
    if machine:
        lines.append(f"- CPU: {machine.get('cpu')}; {machine.get('logical_cores')} logical cores "
                     f"({machine.get('physical_cores')} physical); RAM {machine.get('ram_gib')} GiB")
        lines.append(f"- OS: {machine.get('os')}; Python {machine.get('python')}")
        la, le = machine.get("load_average"), meta.get("load_average_end")
        lines.append(f"- Load average (1/5/15 min) at start {la}" + (f", at end {le}" if le else ""))
        if machine.get("git_commit"):
            lines.append(f"- Commit: {machine['git_commit']}")
        versions = machine.get("versions", {})
        lines.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    lines.append("")
    return "\n".join(lines)


def write_markdown(results: Results, path: str | Path) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(markdown(results))


def write_json(results: Results, path: str | Path) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(results.to_json(), indent=2, default=str) + "\n")


def console_summary(results: Results):
    """A rich table of the named results (printed at the end of a run)."""
    from rich.table import Table

    t = Table(title="MinIODB bench: named results", show_lines=False)
    for col in ("name", "value", "better", "target", ""):
        t.add_column(col)
    for mv in results.ordered_metrics():
        value = fmt_metric(mv)
        if mv.value is None and mv.detail.get("reason"):
            value = f"n/a: {mv.detail['reason'][:60]}"
        t.add_row(mv.name, value, mv.spec.better, mv.spec.target_text(), verdict(mv))
    return t


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")

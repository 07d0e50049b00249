"""Named results: a registry of metrics (unit, which direction is better, target) and the
measurements of one run.

Two levels:

* a :class:`Measurement` is one system (MinIODB or a baseline) on one workload: rows and
  bytes moved, the duration of every repeat, latency samples for latency workloads. It gives
  rows/s, MB/s and p50/p95/p99 (medians over the repeats).
* a metric is a named scalar derived from measurements, e.g. ``ingest_vs_raw_flight``. Names
  are stable across versions so reports can be compared; every name is declared once in
  :data:`REGISTRY` with :func:`define`. A later issue adds its own (auth/TLS overhead, ...) by
  calling :func:`define` and :meth:`Results.set` - the report and the plot pick them up.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

HIGHER = "higher"
LOWER = "lower"


@dataclass(frozen=True)
class MetricSpec:
    name: str
    unit: str  # "x" (ratio), "rows/s", "ms", "MiB" ...
    better: str  # HIGHER | LOWER
    description: str
    target: float | None = None  # >= target when HIGHER is better, <= when LOWER
    source: str = ""  # the issue that asked for it

    @property
    def is_ratio(self) -> bool:
        return self.unit == "x"

    def meets(self, value: float | None) -> bool | None:
        if value is None or self.target is None:
            return None
        return value >= self.target if self.better == HIGHER else value <= self.target

    def target_text(self) -> str:
        if self.target is None:
            return ""
        return f"{'≥' if self.better == HIGHER else '≤'} {self.target:g}"


REGISTRY: dict[str, MetricSpec] = {}


def define(name: str, unit: str, better: str, description: str, target: float | None = None,
           source: str = "") -> MetricSpec:
    if better not in (HIGHER, LOWER):
        raise ValueError(f"better must be {HIGHER!r} or {LOWER!r}")
    spec = MetricSpec(name, unit, better, description, target, source)
    REGISTRY[name] = spec
    return spec


# The stable names asked for by the node (#2), protocol (#3) and gateway (#5) issues.
STABLE = (
    define("tpch_sf1_geomean_vs_duckdb", "x", LOWER,
           "TPC-H SF1 (tpchgen-cli, 8 tables loaded over ADBC, flushed): geometric mean over the 22 "
           "queries of ADBC time / DuckDB in-process time over the tpchgen Parquet files", 1.15, "speed #15"),
    define("tpch_sf1_worst_vs_duckdb", "x", LOWER,
           "TPC-H SF1: the worst of the 22 per-query ratios (ADBC time / DuckDB in-process time)",
           1.5, "speed #15"),
    define("ingest_vs_raw_flight", "x", HIGHER,
           "pyarrow.flight client on both sides, narrow table (4 numeric cols): rows/s of a DoPut of "
           "CommandStatementIngest into the node (durable ack) / rows/s of a do_put to a raw pyarrow.flight "
           "server that drains and acks", 0.6, "node #2, speed #15"),
    define("groupby_vs_duckdb", "x", LOWER,
           "GROUP BY k over the flushed narrow table: ADBC time / DuckDB in-process time (same Parquet)",
           1.5, "node #2"),
    define("export_vs_raw_flight", "x", HIGHER,
           "pyarrow.flight client on both sides: rows/s of the node's GetFlightInfo + DoGet of SELECT * of the "
           "flushed narrow table / rows/s of a do_get of the same rows from a raw pyarrow.flight server holding "
           "them in memory", 0.6, "protocol #3, speed #15"),
    define("wide_ingest_vs_raw_flight", "x", HIGHER,
           "pyarrow.flight client on both sides, the 16-column lineitem-like table with strings: rows/s of a "
           "DoPut of CommandStatementIngest into the node (durable ack) / rows/s of a do_put of the same batches "
           "to the raw drain server. A DoPut larger than the node's bound on unflushed data per table "
           "(2 x buffer.max_bytes, 512 MiB by default; 10M rows are 1.4 GB) goes on at Parquet-flush speed "
           "(backpressure)", 0.5, "speed #15"),
    define("small_query_latency_vs_minimal_flightsql", "x", LOWER,
           "p50 of SELECT count(*) FROM small_table on a warm ADBC connection / the same against a "
           "minimal DuckDB Flight SQL server", 1.5, "protocol #3"),
    define("rest_ingest_rows_per_s", "rows/s", HIGHER,
           "POST /api/v1/data, 1000 records x 8 fields per request, 4 client threads: "
           "rows acknowledged per s",
           None, "gateway #5"),
    define("rest_vs_bare_json", "x", HIGHER,
           "REST ingest rows/s / a bare ASGI endpoint that only parses the same JSON", None, "gateway #5"),
    define("tpch_like_q1_vs_duckdb", "x", LOWER,
           "Q1-like grouped aggregate over the wide table: ADBC time / DuckDB in-process time", 1.5),
    define("tpch_like_q6_vs_duckdb", "x", LOWER,
           "Q6-like filtered sum over the wide table: ADBC time / DuckDB in-process time", 1.5),
)
STABLE_NAMES = tuple(s.name for s in STABLE)

# Further named results (kept stable too, but not required by an issue's acceptance).
define("ingest_rows_per_s", "rows/s", HIGHER,
       "ADBC adbc_ingest of the narrow table into the node, durable acknowledgement: rows/s")
define("ingest_adbc_vs_adbc_ceiling", "x", HIGHER,
       "ADBC client on both sides, narrow table: adbc_ingest into the node (durable ack) / adbc_ingest into "
       "the raw pyarrow.flight drain server (information: the ADBC client's own CPU bounds both)",
       None, "speed #15")
define("ingest_adbc_client_vs_raw_flight", "x", HIGHER,
       "the ADBC client alone: adbc_ingest into the raw drain server / pyarrow.flight do_put into it "
       "(the ADBC client's ceiling)")
define("export_rows_per_s", "rows/s", HIGHER, "ADBC fetch_arrow_table of SELECT * of the narrow table: rows/s")
define("export_adbc_vs_raw_flight", "x", HIGHER,
       "ADBC fetch_arrow_table of SELECT * of the narrow table from the node / a pyarrow.flight do_get of the "
       "same rows from the raw server (information: includes the ADBC client's cost)", None, "speed #15")
define("small_query_p50_ms", "ms", LOWER, "p50 of SELECT count(*) FROM small_table over ADBC")
define("small_query_p99_ms", "ms", LOWER, "p99 of SELECT count(*) FROM small_table over ADBC")
define("select_1_p50_ms", "ms", LOWER, "p50 of SELECT 1 on a warm ADBC connection (protocol overhead alone)")
define("select_1_p99_ms", "ms", LOWER, "p99 of SELECT 1 on a warm ADBC connection")
define("select_1_vs_minimal_flightsql", "x", LOWER,
       "p50 of SELECT 1 on a warm ADBC connection / the same against a minimal DuckDB Flight SQL server "
       "(the faster of its two modes), interleaved", 1.2, "speed #19")
define("wide_ingest_rows_per_s", "rows/s", HIGHER,
       "pyarrow.flight DoPut of CommandStatementIngest of the 16-column lineitem-like table (durable ack): rows/s")
define("tpch_like_topn_vs_duckdb", "x", LOWER, "top-N over the wide table: ADBC time / DuckDB time")
define("tpch_like_date_range_vs_duckdb", "x", LOWER, "date-range filter: ADBC time / DuckDB time")
define("tpch_like_high_card_groupby_vs_duckdb", "x", LOWER,
       "high-cardinality GROUP BY (~rows/10 groups, all returned): ADBC time / DuckDB time")
define("rest_single_write_p50_ms", "ms", LOWER, "p50 of one POST /api/v1/data with a single record")
define("rest_single_write_vs_bare_json", "x", LOWER,
       "single-record POST p50 / the bare JSON endpoint's p50")
define("memory_peak_rss_mib", "MiB", LOWER,
       "peak RSS of the node process while ingesting the memory workload (1M-row batches, DoPut)",
       2048, "node #2")
define("point_query_p50_ms", "ms", LOWER,
       "p50 of SELECT count(*) FROM lineitem WHERE l_orderkey = <a different key each call> over ADBC on a warm "
       "connection, one cursor (TPC-H lineitem at --scale, 6M rows at SF1, in >= 3 files)", 5.0, "selective #19")
define("point_query_vs_duckdb", "x", LOWER,
       "point lookup p50 through ADBC / p50 of DuckDB in-process over the node's own Parquet files", 1.0,
       "selective #19")
define("time_range_query_p50_ms", "ms", LOWER,
       "p50 of count(*), sum(value) over one day of a year of events (3M rows at --scale 1, 3 files) over ADBC "
       "(one cursor, a new text every call)",
       None, "selective #19")
define("time_range_query_vs_duckdb", "x", LOWER,
       "one-day time range p50 through ADBC / p50 of DuckDB in-process over the node's own Parquet files", 1.0,
       "selective #19")
define("new_text_query_floor_ms", "ms", LOWER,
       "p50 of a trivial query whose text changes every call (SELECT k WHERE k > 0) over ADBC against the minimal "
       "Flight SQL server (DuckDB in memory, prepared statements): what the protocol alone costs a lookup with a "
       "new literal (ADBC: ClosePreparedStatement + CreatePreparedStatement + GetFlightInfo + DoGet)",
       None, "selective #19")
define("point_query_bound_p50_ms", "ms", LOWER,
       "p50 of the point lookup with the key bound as a parameter (WHERE l_orderkey = ?) on one ADBC cursor: "
       "the text never changes, so ADBC binds (DoPut) instead of re-preparing (ClosePreparedStatement + "
       "CreatePreparedStatement)", None, "selective #19")
define("point_query_bound_vs_duckdb", "x", LOWER,
       "bound point lookup p50 through ADBC / p50 of the same parameterised statement in DuckDB in-process over "
       "the node's own Parquet files", None, "selective #19")
define("time_range_query_bound_p50_ms", "ms", LOWER,
       "p50 of the one-day time range with both bounds as parameters (ts >= ? AND ts < ?) on one ADBC cursor",
       None, "selective #19")
define("time_range_query_bound_vs_duckdb", "x", LOWER,
       "bound time range p50 through ADBC / p50 of the same parameterised statement in DuckDB in-process",
       None, "selective #19")
define("memory_ingest_rows_per_s", "rows/s", HIGHER, "rows/s of the memory workload's ingest")


def percentile(samples: list[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..100) of a non-empty list."""
    s = sorted(samples)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@dataclass
class Measurement:
    """One system on one workload, repeated."""

    workload: str  # e.g. "ingest", "groupby", "tpch_like_q1"
    title: str  # e.g. "ingest narrow table (4 cols)"
    system: str  # "miniodb" or the baseline's key ("raw_flight", "duckdb", ...)
    label: str  # e.g. "MinIODB · ADBC adbc_ingest"
    rows: int = 0  # rows moved per repeat
    nbytes: int = 0  # Arrow bytes moved per repeat
    seconds: list[float] = field(default_factory=list)  # one duration per repeat
    latencies: list[list[float]] = field(default_factory=list)  # per repeat: seconds per call
    ratios: list[str] = field(default_factory=list)  # metric names computed from this row
    note: str = ""

    @property
    def baseline(self) -> bool:
        return self.system != "miniodb"

    @property
    def median_seconds(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None

    @property
    def rows_per_s(self) -> float | None:
        m = self.median_seconds
        return self.rows / m if m and self.rows else None

    @property
    def mb_per_s(self) -> float | None:
        m = self.median_seconds
        return self.nbytes / 1e6 / m if m and self.nbytes else None

    def latency(self, q: float) -> float | None:
        """Median over the repeats of each repeat's q-th percentile, in seconds."""
        per = [percentile(r, q) for r in self.latencies if r]
        return statistics.median(per) if per else None

    def to_json(self) -> dict:
        def ms(v: float | None) -> float | None:
            return None if v is None else v * 1000.0

        return {
            "workload": self.workload, "title": self.title, "system": self.system, "label": self.label,
            "rows": self.rows, "bytes": self.nbytes, "seconds": self.seconds,
            "median_seconds": self.median_seconds, "rows_per_s": self.rows_per_s, "mb_per_s": self.mb_per_s,
            "p50_ms": ms(self.latency(50)), "p95_ms": ms(self.latency(95)), "p99_ms": ms(self.latency(99)),
            "calls": sum(len(r) for r in self.latencies), "ratios": self.ratios, "note": self.note,
        }


@dataclass
class MetricValue:
    name: str
    value: float | None
    detail: dict[str, Any] = field(default_factory=dict)  # e.g. {"reason": "..."} when None

    @property
    def spec(self) -> MetricSpec:
        return REGISTRY[self.name]

    def to_json(self) -> dict:
        s = self.spec
        return {"value": self.value, "unit": s.unit, "better": s.better, "target": s.target,
                "meets_target": s.meets(self.value), "description": s.description, **self.detail}


class Results:
    """Everything one ``miniodb bench`` run measured."""

    def __init__(self) -> None:
        self.measurements: list[Measurement] = []
        self.metrics: dict[str, MetricValue] = {}
        self.notes: list[str] = []
        self.meta: dict[str, Any] = {}

    def add(self, m: Measurement) -> Measurement:
        self.measurements.append(m)
        return m

    def set(self, name: str, value: float | None, **detail: Any) -> None:
        if name not in REGISTRY:
            raise KeyError(f"metric {name!r} is not defined; add it with bench.metrics.define()")
        self.metrics[name] = MetricValue(name, value, detail)

    def unavailable(self, name: str, reason: str) -> None:
        self.set(name, None, reason=reason)

    def ratio(self, name: str, ours: float | None, base: float | None, **detail: Any) -> float | None:
        """Set ``name`` to ``ours / base`` (None, with a reason, when either is missing)."""
        if ours is None or not base:
            self.unavailable(name, detail.pop("reason", "not measured"))
            return None
        value = ours / base
        self.set(name, value, **detail)
        return value

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def value(self, name: str) -> float | None:
        mv = self.metrics.get(name)
        return mv.value if mv else None

    def ordered_metrics(self) -> list[MetricValue]:
        """Stable names first (always present, None when not measured), then the others."""
        out = [self.metrics.get(n) or MetricValue(n, None, {"reason": "workload not run"})
               for n in STABLE_NAMES]
        out += [self.metrics[n] for n in REGISTRY if n in self.metrics and n not in STABLE_NAMES]
        return out

    def to_json(self) -> dict:
        return {
            "meta": self.meta,
            "metrics": {m.name: m.to_json() for m in self.ordered_metrics()},
            "measurements": [m.to_json() for m in self.measurements],
            "notes": self.notes,
        }

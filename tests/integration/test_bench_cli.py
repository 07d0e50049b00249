"""``miniodb bench``: the CLI runs end to end at a tiny size (so it cannot rot) and its three
outputs carry every stable metric name. Numbers are not asserted (no wall-clock limits)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.metrics import REGISTRY, STABLE_NAMES, Results
from bench.report import markdown
from clients.cli import main

ROOT = Path(__file__).resolve().parents[2]
EIGHT = ("ingest_vs_raw_flight", "groupby_vs_duckdb", "export_vs_raw_flight", "wide_ingest_vs_raw_flight",
         "small_query_latency_vs_minimal_flightsql", "rest_ingest_rows_per_s", "rest_vs_bare_json",
         "tpch_like_q1_vs_duckdb", "tpch_like_q6_vs_duckdb")
# measured in the same run, for information (ADBC on the node's side), and the throughputs
INFORMATION = ("ingest_adbc_vs_adbc_ceiling", "export_adbc_vs_raw_flight", "ingest_rows_per_s",
               "export_rows_per_s", "wide_ingest_rows_per_s", "new_text_query_floor_ms",
               "point_query_bound_p50_ms", "point_query_bound_vs_duckdb", "time_range_query_bound_p50_ms",
               "time_range_query_bound_vs_duckdb")
REST_METRICS = {"rest_ingest_rows_per_s", "rest_vs_bare_json"}


def test_stable_names_are_registered():
    assert set(EIGHT) <= set(STABLE_NAMES)


def test_transfer_ratios_say_which_client():
    for name in ("ingest_vs_raw_flight", "export_vs_raw_flight", "wide_ingest_vs_raw_flight"):
        assert "pyarrow.flight client on both sides" in REGISTRY[name].description, name
    for name in ("ingest_adbc_vs_adbc_ceiling", "export_adbc_vs_raw_flight"):
        assert "ADBC" in REGISTRY[name].description, name


def test_empty_report_still_names_every_stable_metric():
    text = markdown(Results())
    for name in EIGHT:
        assert f"`{name}`" in text


def test_bench_help_is_lazy_and_lists_workloads():
    result = CliRunner().invoke(main, ["bench", "--help"])
    assert result.exit_code == 0, result.output
    for word in ("ingest", "query", "export", "rest", "latency", "tpch", "all", "--rows", "--repeat", "--scale", "--report",
                 "--plot", "--json", "--uri"):
        assert word in result.output


def test_bench_rejects_bad_options():
    result = CliRunner().invoke(main, ["bench", "all", "--rows", "0"])
    assert result.exit_code == 2
    assert "--rows" in result.output


@pytest.mark.slow
def test_bench_all_tiny(tmp_path):
    # the chart as SVG: written without matplotlib (which only the bench extra brings)
    report, plot, out = tmp_path / "RESULTS.md", tmp_path / "results.svg", tmp_path / "results.json"
    # 20 latency queries (not 200) per system: the p50/p99 are computed all the same
    cmd = [sys.executable, "-m", "clients.cli", "bench", "all", "--rows", "10000", "--repeat", "1", "--scale", "0.01",
           "--latency-queries", "20", "--report", str(report), "--plot", str(plot), "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]

    text = report.read_text()
    data = json.loads(out.read_text())
    for name in EIGHT:
        assert f"`{name}`" in text
        assert name in data["metrics"]
        metric = data["metrics"][name]
        if metric["value"] is None:  # only the REST gateway may be absent, and then it says why
            assert name in REST_METRICS and metric.get("reason"), (name, metric)
        else:
            assert metric["value"] > 0, (name, metric)
    for name in INFORMATION:
        assert data["metrics"][name]["value"] > 0, (name, data["metrics"][name])
    assert data["meta"]["machine"]["logical_cores"] >= 1
    assert "## Machine" in text and "pyarrow" in text
    assert {m["system"] for m in data["measurements"]} >= {"miniodb", "raw_flight", "duckdb",
                                                           "minimal_flightsql_minimal"}
    chart = plot.read_text()
    assert chart.startswith("<svg") and chart.rstrip().endswith("</svg>")
    for name in ("ingest_vs_raw_flight", "export_vs_raw_flight", "wide_ingest_vs_raw_flight"):
        assert name in chart


def test_bench_tpch_rejects_a_scale_of_zero():
    result = CliRunner().invoke(main, ["bench", "tpch", "--scale", "0"])
    assert result.exit_code == 2
    assert "--scale" in result.output


@pytest.mark.slow
def test_bench_tpch_tiny(tmp_path):
    """All 22 queries over tpchgen data loaded through ADBC: every answer equals DuckDB's."""
    out = tmp_path / "results.json"
    cmd = [sys.executable, "-m", "clients.cli", "bench", "tpch", "--scale", "0.01", "--repeat", "1",
           "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    data = json.loads(out.read_text())
    geo = data["metrics"]["tpch_sf0_01_geomean_vs_duckdb"]
    assert geo["value"] > 0 and geo["target"] is None
    assert geo["wrong_answers"] == 0 and geo["queries"] == 22 and len(geo["per_query"]) == 22
    assert data["metrics"]["tpch_sf0_01_worst_vs_duckdb"]["value"] >= geo["value"]
    assert data["metrics"]["tpch_sf1_geomean_vs_duckdb"]["value"] is None  # another scale's name
    systems = {(m["workload"], m["system"]) for m in data["measurements"]}
    assert {(f"tpch_sf0_01_q{n}", s) for n in range(1, 23) for s in ("miniodb", "duckdb")} <= systems
    assert data["meta"]["options"]["scale"] == 0.01


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.s3
def test_bench_cluster_tiny(tmp_path):
    """Three server-mode nodes (the bench starts redis-server and moto_server) vs one node:
    every answer equal (the workload fails otherwise) and its named results present."""
    out = tmp_path / "results.json"
    cmd = [sys.executable, "-m", "clients.cli", "bench", "cluster", "--scale", "0.01", "--repeat", "1",
           "--latency-queries", "20", "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    data = json.loads(out.read_text())
    for name in ("cluster3_tpch_geomean_vs_single_node", "cluster_small_query_p50_ms",
                 "single_node_small_query_p50_ms", "cluster_scan_rows_per_s"):
        assert data["metrics"][name]["value"] > 0, (name, data["metrics"][name])
    assert data["metrics"]["cluster3_tpch_geomean_vs_single_node"]["wrong_answers"] == 0
    assert {m["system"] for m in data["measurements"]} >= {"miniodb", "cluster3"}

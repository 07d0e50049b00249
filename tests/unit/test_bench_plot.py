"""The bench chart: SVG written without any plotting library; a PNG without matplotlib fails with
a hint that names the extra that brings it."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET

import pytest

from bench.metrics import Measurement, Results
from bench.plot import PlotUnavailable, write_plot


def _results() -> Results:
    r = Results()
    r.meta.update(command="miniodb bench ingest", machine={"cpu": "test cpu", "logical_cores": 2})
    ours = r.add(Measurement("ingest", "ingest narrow table (4 cols)", "miniodb", "MinIODB · pyarrow", 1000, 32000,
                             [0.6, 0.5, 0.4]))  # median 0.5 s
    raw = r.add(Measurement("ingest", "ingest narrow table (4 cols)", "raw_flight", "raw <pyarrow> & co", 1000,
                            32000, [0.25]))
    lat = r.add(Measurement("latency", "small query (count)", "miniodb", "MinIODB · ADBC"))
    lat.latencies.append([0.001, 0.002, 0.004])
    r.ratio("ingest_vs_raw_flight", ours.rows_per_s, raw.rows_per_s)  # 0.5: misses its 0.6 target
    r.ratio("export_vs_raw_flight", 3.0, 2.0)  # 1.5: meets it
    r.set("groupby_vs_duckdb", None, reason="not measured")
    return r


def test_svg_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # any import of it fails
    path = tmp_path / "chart" / "results.svg"
    write_plot(_results(), path)
    text = path.read_text()
    root = ET.fromstring(text)  # well-formed XML (labels are escaped)
    assert root.tag.endswith("svg")
    texts = " ".join(t.text or "" for t in root.iter() if t.tag.endswith("text"))
    assert "ingest_vs_raw_flight (↑ better)" in texts and "0.50x" in texts
    assert "export_vs_raw_flight (↑ better)" in texts and "1.50x" in texts
    assert "groupby_vs_duckdb" not in texts  # no value, no bar
    assert "raw <pyarrow> & co" in texts and "p50 2.00" in texts
    fills = [e.get("fill") for e in root.iter() if e.tag.endswith("rect")]
    assert "#e53e3e" in fills and "#38a169" in fills  # one ratio misses its target, one meets it


def test_png_without_matplotlib_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(PlotUnavailable) as err:
        write_plot(_results(), tmp_path / "results.png")
    assert "miniodb[bench]" in str(err.value) and ".svg" in str(err.value)
    assert not (tmp_path / "results.png").exists()


def test_png_with_matplotlib(tmp_path):
    pytest.importorskip("matplotlib")
    write_plot(_results(), tmp_path / "results.png")
    assert (tmp_path / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

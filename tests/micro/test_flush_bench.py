"""Buffer flush to Parquet as ``miniodb flush`` runs it (``Node.flush``): snapshot -> Parquet
(LZ4, statistics) -> local object store -> catalog commit (SQLite) -> WAL truncate, for one
table buffer filled by four ingests."""

from __future__ import annotations

import pytest

from bench.data import narrow_table, wide_table

from .stack import ingest, start_node


@pytest.mark.parametrize("kind,rows", [("narrow", 100_000), ("narrow", 1_000_000), ("wide", 100_000)])
def test_flush_buffer_to_parquet(benchmark, tmp_path, kind, rows):
    node = start_node(tmp_path)
    data = narrow_table(rows) if kind == "narrow" else wide_table(rows)
    chunks = [data.slice(i, rows // 4) for i in range(0, rows, rows // 4)]

    def fill():
        for chunk in chunks:  # four ingests' worth of entries
            ingest(node, "t", chunk)
        return ("t",), {}

    try:
        benchmark.extra_info.update(rows=rows, bytes=data.nbytes, table=kind)
        results = benchmark.pedantic(node.flush, setup=fill, rounds=5, iterations=1)
        assert results[0].rows == rows
    finally:
        node.stop()

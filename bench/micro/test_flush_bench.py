"""Buffer flush to Parquet: snapshot -> Parquet (zstd, statistics) -> local object store ->
catalog commit (SQLite) -> WAL truncate, for one table buffer."""

from __future__ import annotations

import pytest

from bench.data import narrow_table, wide_table

from ._stack import make_stack


@pytest.mark.parametrize("kind,rows", [("narrow", 100_000), ("narrow", 1_000_000), ("wide", 100_000)])
def test_flush_buffer_to_parquet(benchmark, tmp_path, kind, rows):
    stack = make_stack(tmp_path)
    data = narrow_table(rows) if kind == "narrow" else wide_table(rows)
    info = stack.create("t", data.schema)
    chunks = [data.slice(i, rows // 4) for i in range(0, rows, rows // 4)]

    def fill():
        for chunk in chunks:  # four ingests' worth of entries
            stack.buffer(info, chunk)

    benchmark.extra_info.update(rows=rows, bytes=data.nbytes, table=kind)
    result = benchmark.pedantic(stack.flusher.flush_table, setup=lambda: (fill(), (("t",), {}))[1], rounds=5,
                                iterations=1)
    assert result.rows == rows
    stack.close()

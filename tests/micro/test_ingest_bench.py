"""Durable ingest of one DoPut's worth of rows, as the Flight server calls it (``Node.ingest``:
schema check, WAL append and fsync under the buffer lock, buffer append).

Each round's rows are flushed before the next (untimed), so the WAL and the buffer do not
grow over the rounds."""

from __future__ import annotations

import pytest

from bench.data import narrow_table

from .stack import ingest, start_node


def _bench_ingest(benchmark, node, rows: int, rounds: int):
    data = narrow_table(rows)
    ingest(node, "t", data.slice(0, 1), mode="create")

    def setup():
        node.flush("t")
        return (node, "t", data, "append"), {}

    benchmark.extra_info.update(rows=rows, bytes=data.nbytes, sync=node.settings.wal.sync)
    return benchmark.pedantic(ingest, setup=setup, rounds=rounds, iterations=1, warmup_rounds=2)


@pytest.mark.parametrize("rows", [1_000, 100_000])
def test_ingest_wal_fsync(benchmark, tmp_path, rows):
    node = start_node(tmp_path)
    try:
        assert _bench_ingest(benchmark, node, rows, rounds=50) == rows
    finally:
        node.stop()


def test_ingest_wal_no_sync(benchmark, tmp_path):
    node = start_node(tmp_path, **{"wal.sync": "none"})
    try:
        assert _bench_ingest(benchmark, node, 100_000, rounds=50) == 100_000
    finally:
        node.stop()

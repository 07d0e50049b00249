"""WAL append: one Arrow IPC segment written, fsynced (policy ``always``) and renamed.

Each round's segment is removed before the next (untimed), so the page cache and the disk
do not fill up over thousands of rounds."""

from __future__ import annotations

import pytest

from bench.data import narrow_table
from flight_server.wal import WriteAheadLog


def _bench_append(benchmark, wal: WriteAheadLog, rows: int, rounds: int):
    data = narrow_table(rows)
    written: list[int] = []

    def setup():
        wal.remove(written)
        written.clear()
        return ("t", "table-id", data), {}

    def append(*args):
        segment = wal.append(*args)
        written.append(segment.seq)
        return segment

    benchmark.extra_info.update(rows=rows, bytes=data.nbytes, sync=wal.sync)
    return benchmark.pedantic(append, setup=setup, rounds=rounds, iterations=1, warmup_rounds=2)


@pytest.mark.parametrize("rows", [1_000, 100_000])
def test_wal_append_fsync(benchmark, tmp_path, rows):
    segment = _bench_append(benchmark, WriteAheadLog(tmp_path / "wal", sync=True), rows, rounds=100)
    assert segment.rows == rows


def test_wal_append_no_sync(benchmark, tmp_path):
    segment = _bench_append(benchmark, WriteAheadLog(tmp_path / "wal", sync=False), 100_000, rounds=100)
    assert segment.rows == 100_000

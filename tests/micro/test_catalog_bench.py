"""Catalog lookups stay flat as a table's manifest grows, with the metadata in Redis.

Planning = ``Node.query`` up to the Arrow reader for a query whose WHERE prunes to one day:
the data-version check (one HGET), the cached manifest, min/max pruning, binding the selected
files. Both cases select the same 10 files of one day; the large table has 10,000 files
(1,000 days x 10), the small one only those 10. The promise: the 10,000-file plan costs at
most 20 ms more than the 10-file plan. ``test_manifest_cold_load`` times the one-off load of
the 10,000-entry manifest as the query path pays it once per data version
(``Catalog.manifest`` after its cache is dropped).

The file entries are committed straight into the metadata store (untimed setup: 10,000
flushes would take minutes); only the target day's objects exist. Needs ``redis-server``.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flight_server.metadata.base import FileEntry

from .stack import start_node

PER_DAY = 10
TARGET = dt.date(2024, 6, 1)
SQL = "SELECT count(*) FROM t WHERE ts >= TIMESTAMPTZ '2024-06-01 00:00:00+00' AND ts < TIMESTAMPTZ '2024-06-02 00:00:00+00'"
SCHEMA = pa.schema([("ts", pa.timestamp("us", tz="UTC")), ("v", pa.int64())])
US_PER_DAY = 86_400_000_000


def _epoch_us(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * 1_000_000


class Planner:
    def __init__(self, root, redis, files: int):
        self.prefix = f"bench-{uuid.uuid4().hex[:8]}"
        env = {"MINIODB_REDIS_HOST": "127.0.0.1", "MINIODB_REDIS_PORT": str(redis.port),
               "MINIODB_REDIS_PREFIX": self.prefix}
        if redis.password:
            env["MINIODB_REDIS_PASSWORD"] = redis.password
        self.node = node = start_node(root / "node", env)
        info = node.ingestor.create_table("t", SCHEMA)
        days = max(1, files // PER_DAY)
        first = TARGET - dt.timedelta(days=days // 2)
        entries = []
        for i in range(files):
            day = first + dt.timedelta(days=i // PER_DAY)
            lo = _epoch_us(day)
            key = f"t/date={day.isoformat()}/bench-{i:012d}.parquet"
            if day == TARGET:  # only the files a plan binds need to exist
                t = pa.table({"ts": pa.array([lo, lo + US_PER_DAY - 1], SCHEMA.field("ts").type),
                              "v": pa.array([i, i], pa.int64())})
                pq.write_table(t, root / "tmp.parquet")
                node.store.put_file(key, root / "tmp.parquet")
            entries.append(FileEntry(key=key, rows=2, size=600, min_values={"ts": lo, "v": i},
                                     max_values={"ts": lo + US_PER_DAY - 1, "v": i}, node_id="bench",
                                     columns=("ts", "v")))
        for start in range(0, files, 2000):
            node.metadata.commit_files("t", info.table_id, entries[start:start + 2000])
        self.files = files

    def plan(self):
        result = self.node.query(SQL)
        result.close()
        return result

    def cold_manifest(self):
        self.node.catalog.invalidate("t")
        return self.node.catalog.manifest("t")

    def close(self) -> None:
        self.node.ingestor.drop_table("t", if_exists=True)
        self.node.stop()


@pytest.mark.parametrize("files", [10, 10_000])
def test_plan_one_day_of(benchmark, tmp_path, redis_server, files):
    p = Planner(tmp_path, redis_server, files)
    try:
        result = p.plan()  # warm: manifest cached for this data version, files bound once
        assert result.stats["files_total"] == files
        assert result.stats["files_scanned"] == PER_DAY
        benchmark.extra_info.update(files=files, files_scanned=PER_DAY, metadata="redis")
        benchmark(p.plan)
    finally:
        p.close()


def test_manifest_cold_load(benchmark, tmp_path, redis_server):
    p = Planner(tmp_path, redis_server, 10_000)
    try:
        benchmark.extra_info.update(files=10_000, metadata="redis")
        manifest = benchmark(p.cold_manifest)
        assert len(manifest.files) == 10_000
    finally:
        p.close()

"""Catalog lookups stay flat as a table's manifest grows, with the metadata in Redis.

Planning = ``QueryEngine.execute`` up to the Arrow reader for a query whose WHERE prunes to
one day: the data-version check (one HGET), the cached manifest, min/max pruning, binding the
selected files. Both cases select the same 10 files of one day; the large table has 10,000
files (1,000 days x 10), the small one only those 10. The promise: the 10,000-file plan costs
at most 20 ms more than the 10-file plan. ``test_manifest_cold_load`` times the one-off load of
the 10,000-entry manifest (HVALS), paid once per data version.

Needs a ``redis-server`` binary (as the tests do).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flight_server.cache import FileCache
from flight_server.catalog import Catalog
from flight_server.config import RedisSettings
from flight_server.metadata import load_metadata_store
from flight_server.metadata.base import FileEntry
from flight_server.query.engine import QueryEngine
from flight_server.query.resolve import TableResolver
from flight_server.storage.local import LocalObjectStore
from tests.fixtures.redis import redis_server  # noqa: F401 - the session fixture, used by name

PER_DAY = 10
TARGET = dt.date(2024, 6, 1)
SQL = "SELECT count(*) FROM t WHERE ts >= TIMESTAMPTZ '2024-06-01 00:00:00+00' AND ts < TIMESTAMPTZ '2024-06-02 00:00:00+00'"
SCHEMA = pa.schema([("ts", pa.timestamp("us", tz="UTC")), ("v", pa.int64())])
US_PER_DAY = 86_400_000_000


def _epoch_us(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * 1_000_000


class _NoBuffers:
    """The resolver's buffer side, empty: planning over committed files only."""

    lock = threading.RLock()

    def commit_lock(self, name):
        return contextlib.nullcontext()

    def get(self, name):
        return None


class Planner:
    def __init__(self, root, server, files: int):
        self.prefix = f"bench-{uuid.uuid4().hex[:8]}"
        self.metadata = load_metadata_store(server.url, settings=RedisSettings(prefix=self.prefix))
        self.store = LocalObjectStore(root / "objects")
        self.catalog = Catalog(self.metadata)
        info = self.catalog.create("t", SCHEMA, time_column="ts")
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
                self.store.put_file(key, root / "tmp.parquet")
            entries.append(FileEntry(key=key, rows=2, size=600, min_values={"ts": lo, "v": i},
                                     max_values={"ts": lo + US_PER_DAY - 1, "v": i}, node_id="bench",
                                     columns=("ts", "v")))
        for start in range(0, files, 2000):
            self.metadata.commit_files("t", info.table_id, entries[start:start + 2000])
        self.engine = QueryEngine([str(root / "objects"), str(root / "cache")])
        self.cache = FileCache(self.store, root / "cache", 1 << 30)
        self.resolver = TableResolver(self.catalog, _NoBuffers(), self.cache, self.engine)  # type: ignore[arg-type]
        self.files = files

    def plan(self):
        result = self.engine.execute(SQL, None, self.resolver)
        result.close()
        return result

    def close(self) -> None:
        self.resolver.close()
        self.engine.close()
        c = self.metadata._r  # noqa: SLF001 - cleanup of the bench keys
        keys = list(c.scan_iter(match=f"{self.prefix}:*", count=1000))
        if keys:
            c.delete(*keys)
        self.metadata.close()


@pytest.mark.parametrize("files", [10, 10_000])
def test_plan_one_day_of(benchmark, tmp_path, redis_server, files):  # noqa: F811 - fixture
    p = Planner(tmp_path, redis_server, files)
    try:
        result = p.plan()  # warm: manifest cached for this data version, files bound once
        assert result.stats["files_total"] == files
        assert result.stats["files_scanned"] == PER_DAY
        benchmark.extra_info.update(files=files, files_scanned=PER_DAY, metadata="redis")
        benchmark(p.plan)
    finally:
        p.close()


def test_manifest_cold_load(benchmark, tmp_path, redis_server):  # noqa: F811 - fixture
    p = Planner(tmp_path, redis_server, 10_000)
    try:
        benchmark.extra_info.update(files=10_000, metadata="redis")
        files = benchmark(p.metadata.list_files, "t")
        assert len(files) == 10_000
    finally:
        p.close()

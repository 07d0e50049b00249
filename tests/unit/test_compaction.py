"""Compaction in process (flight_server/compaction.py) over the embedded backends (SQLite
metadata, local folder storage): planning, the merged file's rows, statistics and layout,
the strict swap under a concurrent rewrite, the lease, and sort keys."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from flight_server import compaction
from flight_server.cache import FileCache
from flight_server.catalog import Catalog
from flight_server.compaction import Compactor, plan_merges
from flight_server.config import CompactionSettings
from flight_server.metadata.base import FileEntry, TableConfig
from flight_server.metadata.sqlite import SQLiteMetadataStore
from flight_server.paths import data_file_key
from flight_server.persist import write_parquet
from flight_server.stats import column_stats
from flight_server.storage.local import LocalObjectStore

NOW = 1_700_000_000.0
DAY1, DAY2 = dt.date(2024, 1, 1), dt.date(2024, 1, 2)
SCHEMA = pa.schema([("id", pa.int64()), ("v", pa.float64()), ("s", pa.string())])


class Env:
    def __init__(self, tmp: Path, schema: pa.Schema = SCHEMA, config: TableConfig | None = None, **settings):
        self.meta = SQLiteMetadataStore(tmp / "m.sqlite3", clock=lambda: NOW)
        self.store = LocalObjectStore(tmp / "objects")
        self.catalog = Catalog(self.meta)
        self.info = self.catalog.create("t", schema, config)
        self.tmp = tmp
        self.seq = 0
        settings.setdefault("min_files", 2)
        self.settings = CompactionSettings(**settings)
        self.steps: dict = {}
        self.compactor = Compactor("n1", self.catalog, self.store, FileCache(self.store, tmp / "cache", 1 << 30),
                                   self.settings, tmp / "ctmp", clock=lambda: NOW, faults=self._fault)

    def _fault(self, step: str) -> None:
        if step in self.steps:
            self.steps.pop(step)()

    def put(self, data: pa.Table, day: dt.date = DAY1, age: float = 3600.0, wal_seq: int = 0) -> FileEntry:
        """Write and commit one file the way a flush does."""
        self.seq = self.meta.next_sequence("file:n1")  # as a flush numbers its files
        key = data_file_key("t", day, "n1", self.seq)
        path = self.tmp / f"f{self.seq}.parquet"
        write_parquet(data, path, data.schema)
        self.store.put_file(key, path)
        mins, maxs = column_stats(data)
        entry = FileEntry(key=key, rows=data.num_rows, size=path.stat().st_size, min_values=mins, max_values=maxs,
                          node_id="n1", created_at=NOW - age, columns=tuple(data.schema.names),
                          wal_seq=wal_seq or self.seq)
        self.meta.commit_files("t", self.info.table_id, [entry])
        return entry

    def rows(self) -> pa.Table:
        """Every committed row, read back from the objects."""
        parts = [pq.read_table(self.store.local_path(f.key)) for f in self.meta.list_files("t")]
        return pa.concat_tables(parts, promote_options="default").sort_by("id")


def batch(lo: int, hi: int, schema: pa.Schema = SCHEMA) -> pa.Table:
    ids = list(range(lo, hi))
    cols = {"id": ids, "v": [i / 2 for i in ids], "s": [f"s{i}" for i in ids]}
    return pa.table({f.name: pa.array(cols[f.name], f.type) for f in schema})


def entry(key: str, size: int, age: float = 3600.0) -> FileEntry:
    return FileEntry(key=key, rows=1, size=size, created_at=NOW - age)


def test_plan_groups_small_old_files_by_day():
    s = CompactionSettings(target_file_bytes=1000, min_file_age_seconds=60, min_files=3)
    files = [entry(data_file_key("t", DAY1, "n", i), 100) for i in range(12)]  # 12 x 100: one group of 10, one of 2
    files += [entry(data_file_key("t", DAY2, "n", i), 100) for i in range(20, 22)]  # below min_files
    files += [entry(data_file_key("t", DAY1, "n", 90), 600)]  # not small (>= half the target)
    files += [entry(data_file_key("t", DAY1, "n", 91), 100, age=10)]  # too young
    files += [entry("t/odd-name.parquet", 10)]  # no day partition: never merged
    plan, young = plan_merges(files, s, NOW)
    assert young == 1
    assert list(plan) == [DAY1]
    assert [len(g) for g in plan[DAY1]] == [10, 2]
    assert all(f.key.startswith("t/date=2024-01-01/") for g in plan[DAY1] for f in g)


def test_plan_leaves_a_lone_small_file_alone():
    s = CompactionSettings(target_file_bytes=1000, min_files=2)
    files = [entry(data_file_key("t", DAY1, "n", i), 450) for i in range(3)]  # 2 fit a group; the third is alone
    plan, _ = plan_merges(files, s, NOW)
    assert [len(g) for g in plan[DAY1]] == [2]


def test_compaction_merges_each_day_and_keeps_every_row(tmp_path):
    env = Env(tmp_path)
    before = [env.put(batch(i * 10, i * 10 + 10)) for i in range(6)]
    other = [env.put(batch(100 + i, 101 + i), day=DAY2) for i in range(3)]
    expected = env.rows()
    [r] = env.compactor.run()
    assert (r.outcome, r.files_before, r.files_after, r.merged_files, r.written_files) == ("compacted", 9, 2, 9, 2)
    assert r.rows == 63 and r.bytes_before == sum(f.size for f in before + other)
    files = env.meta.list_files("t")
    assert len(files) == 2 and {f.key for f in files} == set(r.new_keys)
    assert env.rows().equals(expected)
    day1 = next(f for f in files if "date=2024-01-01" in f.key)
    assert day1.rows == 60 and day1.wal_seq == 0 and day1.node_id == "n1"
    assert day1.created_at == max(f.created_at for f in before)
    assert (day1.min_values, day1.max_values) == ({"id": 0, "v": 0.0, "s": "s0"}, {"id": 59, "v": 29.5, "s": "s9"})
    assert all(env.store.exists(f.key) for f in before + other)  # replaced objects stay for the vacuum
    assert env.compactor.run()[0].outcome == "nothing"


def test_young_files_wait(tmp_path):
    env = Env(tmp_path, min_file_age_seconds=60)
    for i in range(4):
        env.put(batch(i, i + 1), age=5)
    [r] = env.compactor.run("t")
    assert (r.outcome, r.young_files, r.files_after) == ("nothing", 4, 4)


def test_older_files_without_a_newer_column_merge_with_nulls(tmp_path):
    env = Env(tmp_path, schema=pa.schema([("id", pa.int64()), ("v", pa.float64())]))
    env.put(batch(0, 3, env.info.schema))
    env.info = env.catalog.update_schema(env.info, SCHEMA)
    env.put(batch(3, 6))
    [r] = env.compactor.run()
    assert r.outcome == "compacted"
    [f] = env.meta.list_files("t")
    assert f.columns == ("id", "v", "s")
    got = pq.read_table(env.store.local_path(f.key)).sort_by("id")
    assert got.column("s").to_pylist() == [None, None, None, "s3", "s4", "s5"]
    assert f.min_values["s"] == "s3"


def test_nan_leaves_no_statistic(tmp_path):
    env = Env(tmp_path)
    env.put(batch(0, 3))
    env.put(pa.table({"id": [3], "v": [math.nan], "s": ["x"]}))
    env.compactor.run()
    [f] = env.meta.list_files("t")
    assert "v" not in f.min_values and "v" not in f.max_values
    assert f.max_values["id"] == 3


def test_merged_row_groups_are_full_size(tmp_path, monkeypatch):
    monkeypatch.setattr(compaction, "ROW_GROUP_ROWS", 1000)
    monkeypatch.setattr(compaction, "READ_BATCH_ROWS", 300)
    env = Env(tmp_path)
    for i in range(7):
        env.put(batch(i * 450, i * 450 + 450))
    env.compactor.run()
    [f] = env.meta.list_files("t")
    md = pq.ParquetFile(env.store.local_path(f.key)).metadata
    assert [md.row_group(i).num_rows for i in range(md.num_row_groups)] == [1000, 1000, 1000, 150]
    assert env.rows().column("id").to_pylist() == list(range(3150))


def test_a_concurrent_rewrite_wins_and_compaction_retries(tmp_path):
    env = Env(tmp_path)
    files = [env.put(batch(i, i + 1)) for i in range(5)]
    uploaded: list[str] = []

    def rewrite():  # a DML rewrite commits first: one input file is replaced
        uploaded.extend(o.key for o in env.store.list("t/") if o.key not in {f.key for f in files})
        new = env.put(batch(100, 101))
        env.meta.commit_files("t", env.info.table_id, [], remove=[files[0].key], strict=True)
        files.append(new)

    env.steps["compaction_uploaded"] = rewrite
    [r] = env.compactor.run()
    assert r.outcome == "compacted"
    assert [f.key for f in env.meta.list_files("t")] == r.new_keys
    assert env.rows().column("id").to_pylist() == [1, 2, 3, 4, 100]
    assert uploaded and not any(env.store.exists(k) for k in uploaded)  # the refused output is gone


def test_another_holder_of_the_lease_means_busy(tmp_path):
    env = Env(tmp_path)
    for i in range(3):
        env.put(batch(i, i + 1))
    assert env.meta.acquire_lease("compaction:t", "other-node", 30)
    [r] = env.compactor.run()
    assert r.outcome == "busy" and "other-node" in r.error
    assert len(env.meta.list_files("t")) == 3
    env.meta.release_lease("compaction:t", "other-node")
    assert env.compactor.run()[0].outcome == "compacted"
    assert env.meta.lease_holder("compaction:t") is None  # released after the pass


def test_a_failure_before_the_commit_changes_nothing(tmp_path):
    env = Env(tmp_path)
    files = [env.put(batch(i, i + 1)) for i in range(3)]

    def boom():
        raise OSError("disk full")

    env.steps["compaction_uploaded"] = boom
    [r] = env.compactor.run()
    assert r.outcome == "error" and "disk full" in r.error
    assert [f.key for f in env.meta.list_files("t")] == [f.key for f in files]
    assert sorted(o.key for o in env.store.list("t/")) == sorted(f.key for f in files)


def test_sort_key_orders_the_merged_file(tmp_path):
    env = Env(tmp_path, config=TableConfig(properties={"sort_key": "id"}))
    env.put(batch(5, 10))  # the later keys land in the first file
    env.put(batch(0, 5))
    env.compactor.run()
    [f] = env.meta.list_files("t")
    got = pq.read_table(env.store.local_path(f.key))
    assert got.column("id").to_pylist() == list(range(10))
    assert pq.ParquetFile(env.store.local_path(f.key)).metadata.row_group(0).sorting_columns


def test_the_lease_of_this_nodes_dead_incarnation_is_taken_over(tmp_path):
    env = Env(tmp_path)
    for i in range(3):
        env.put(batch(i, i + 1))
    assert env.meta.acquire_lease("compaction:t", "n1:incarnation-that-died", 30)
    [r] = env.compactor.run()
    assert r.outcome == "compacted"
    assert env.meta.lease_holder("compaction:t") is None


def test_retention_and_compaction_do_not_fight(tmp_path):
    """Retention plans to drop three expired files; compaction merges them first. The sweep's
    strict commit is refused, it re-reads the file list and drops the merged file instead."""
    from flight_server.retention import RetentionSweeper

    env = Env(tmp_path, config=TableConfig(retention_days=1), min_file_age_seconds=60)
    for i in range(3):
        env.put(batch(i, i + 1), age=3 * 86400)
    keep = env.put(batch(10, 11), age=10)  # fresh: neither expired nor old enough to merge
    real = env.meta.commit_files
    raced: list[str] = []

    def compaction_commits_first(*args, **kwargs):
        if not raced:  # retention's first commit: compaction gets in first
            raced.append("racing")
            raced.append(env.compactor.run()[0].outcome)
        return real(*args, **kwargs)

    env.meta.commit_files = compaction_commits_first
    sweeper = RetentionSweeper(env.catalog, env.store, default_days=0, clock=lambda: NOW)
    assert sweeper.sweep() == {"t": 1}
    assert raced == ["racing", "compacted"]
    assert [f.key for f in env.meta.list_files("t")] == [keep.key]
    assert env.rows().column("id").to_pylist() == [10]


def test_a_lost_lease_drops_the_pass_before_its_commit(tmp_path):
    env = Env(tmp_path)
    files = [env.put(batch(i, i + 1)) for i in range(3)]

    def lease_expires_and_another_node_takes_it():
        env.meta.release_lease("compaction:t", env.compactor.owner)
        assert env.meta.acquire_lease("compaction:t", "n2:other", 30)

    env.steps["compaction_uploaded"] = lease_expires_and_another_node_takes_it
    [r] = env.compactor.run()
    assert r.outcome == "conflict" and "lease" in r.error
    assert [f.key for f in env.meta.list_files("t")] == [f.key for f in files]
    assert sorted(o.key for o in env.store.list("t/")) == sorted(f.key for f in files)  # output removed
    assert env.meta.lease_holder("compaction:t") == "n2:other"  # the new holder's lease is left alone

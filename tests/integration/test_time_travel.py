"""Snapshots and time travel against a real node (issue 16, part 3): a query at version N
returns exactly what the table held at version N (DuckDB over the same rows is the oracle),
AT TIMESTAMP, system.snapshots, retention + vacuum refusing old versions and deleting their
objects, restore-table (CLI) bringing a bad load back, and kill -9 during a restore."""

from __future__ import annotations

import datetime as dt

import duckdb
import pyarrow as pa
import pytest
from click.testing import CliRunner

from clients.cli import main
from clients.errors import InvalidRequest, NotFound

FAST = {"MINIODB_SNAPSHOT_VACUUM_INTERVAL": "0", "MINIODB_SNAPSHOT_GRACE_SECONDS": "0",
        "MINIODB_BUFFER_FLUSH_INTERVAL": "3600"}


def batch(start: int, n: int, tag: str) -> pa.Table:
    ids = list(range(start, start + n))
    return pa.table({"id": pa.array(ids, pa.int64()), "v": pa.array([i * 1.5 for i in ids], pa.float64()),
                     "tag": pa.array([f"{tag}{i % 3}" for i in ids], pa.string())})


def load(c, t: pa.Table) -> int:
    """Ingest and flush one batch; the table's newest version afterwards."""
    c.ingest("t", t)
    c.flush("t")
    return newest(c)


def newest(c) -> int:
    return c.query("SELECT max(version) AS v FROM system.snapshots WHERE table_name = 't'")["v"][0].as_py()


def oracle(tables: list[pa.Table], sql: str) -> list[dict]:
    con = duckdb.connect()
    con.register("data", pa.concat_tables(tables) if tables else batch(0, 0, ""))
    cur = con.execute(sql.replace("{t}", "data"))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


QUERIES = ["SELECT * FROM {t} ORDER BY id",
           "SELECT tag, count(*) AS n, sum(v) AS s FROM {t} WHERE id > 3 GROUP BY tag ORDER BY tag"]


def test_a_query_at_version_n_reads_the_table_as_it_was(node) -> None:
    c = node.client()
    loads = [batch(0, 5, "a"), batch(5, 7, "b"), batch(12, 3, "c")]
    versions = [load(c, t) for t in loads]
    c.ingest("t", batch(100, 4, "buffered"))  # buffered only: never part of a version
    for i, v in enumerate(versions):
        for q in QUERIES:
            got = c.query(q.replace("{t}", f"t AT (VERSION => {v})")).to_pylist()
            assert got == oracle(loads[: i + 1], q), (v, q)
    # a version number of another commit reads the state as of that point
    assert c.query(f"SELECT count(x.id) AS n FROM t AS x AT (VERSION => {versions[1]})")["n"][0].as_py() == 12
    # the current table (buffer included) and time travel in one statement
    both = c.query(f"SELECT (SELECT count(*) FROM t) AS now, (SELECT count(*) FROM t AT (VERSION => {versions[0]})) "
                   "AS first")
    assert both.to_pylist() == [{"now": 19, "first": 5}]
    # AT TIMESTAMP: the newest version committed at or before it
    snaps = c.query("SELECT version, committed_at, operation, files, rows, added, removed FROM system.snapshots "
                    "WHERE table_name = 't' ORDER BY version").to_pylist()
    assert [s["version"] for s in snaps] == versions
    assert [(s["operation"], s["files"], s["rows"], s["added"], s["removed"]) for s in snaps] == [
        ("flush", 1, 5, 1, 0), ("flush", 2, 12, 1, 0), ("flush", 3, 15, 1, 0)]
    for i, s in enumerate(snaps):
        ts = s["committed_at"].astimezone(dt.UTC).replace(tzinfo=None).isoformat(sep=" ")
        got = c.query(f"SELECT * FROM t AT (TIMESTAMP => '{ts}') ORDER BY id").to_pylist()
        assert got == oracle(loads[: i + 1], QUERIES[0])
    before = (snaps[0]["committed_at"] - dt.timedelta(seconds=1)).isoformat()
    with pytest.raises(NotFound, match="at or before"):
        c.query(f"SELECT * FROM t AT (TIMESTAMP => '{before}')")
    with pytest.raises(NotFound, match="not retained"):
        c.query(f"SELECT * FROM t AT (VERSION => {versions[0] - 1})")
    with pytest.raises(InvalidRequest, match="does not exist yet"):
        c.query(f"SELECT * FROM t AT (VERSION => {versions[-1] + 1000})")
    with pytest.raises(InvalidRequest, match="invalid timestamp"):
        c.query("SELECT * FROM t AT (TIMESTAMP => 'yesterday')")
    with pytest.raises(NotFound):
        c.query("SELECT * FROM nope AT (VERSION => 1)")
    # the session option: every table of every SELECT as of that version (ADBC sets it as text)
    with node.adbc() as conn:
        conn.adbc_connection.set_options(**{"adbc.flight.sql.session.option.miniodb.as_of_version":
                                            str(versions[1])})
        with conn.cursor() as cur:
            cur.execute("SELECT tag, count(*) AS n, sum(v) AS s FROM t WHERE id > 3 GROUP BY tag ORDER BY tag")
            assert cur.fetch_arrow_table().to_pylist() == oracle(loads[:2], QUERIES[1])
            cur.execute(f"SELECT count(*) AS n FROM t AT (VERSION => {versions[0]})")  # explicit AT wins
            assert cur.fetch_arrow_table()["n"][0].as_py() == 5
        conn.adbc_connection.set_options(**{"adbc.flight.sql.session.optionerase.miniodb.as_of_version": ""})
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) AS n FROM t")
            assert cur.fetch_arrow_table()["n"][0].as_py() == 19  # current data again, buffer included


def cli(node, *argv: str) -> str:
    r = CliRunner().invoke(main, ["--uri", node.flight, *argv], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


def objects(node) -> set[str]:
    root = node.data_dir / "objects" / "t"
    return {str(p.relative_to(node.data_dir / "objects")) for p in root.rglob("*.parquet")}


def test_restore_table_undoes_a_bad_load_and_vacuum_retires_old_versions(node_factory) -> None:
    node = node_factory(env={**FAST, "MINIODB_SNAPSHOT_RETENTION_VERSIONS": "2"})
    c = node.client()
    good = [batch(0, 4, "a"), batch(4, 4, "b")]
    v_good = [load(c, t) for t in good][-1]
    good_files = objects(node)
    v_bad = load(c, batch(1000, 50, "bad"))
    bad_file = objects(node) - good_files
    c.ingest("t", batch(2000, 2, "late"))  # buffered at restore time: flushed first, then undone too
    out = cli(node, "restore-table", "t", "--version", str(v_good))
    assert f"restored to version {v_good}" in out
    assert c.query(QUERIES[0].replace("{t}", "t")).to_pylist() == oracle(good, QUERIES[0])
    snaps = c.query("SELECT version, operation, rows, removed FROM system.snapshots WHERE table_name = 't' "
                    "ORDER BY version").to_pylist()
    assert snaps[-1]["operation"] == "restore" and snaps[-1]["rows"] == 8 and snaps[-1]["removed"] == 2
    assert c.query(f"SELECT count(*) AS n FROM t AT (VERSION => {v_bad})")["n"][0].as_py() == 58
    # keep 2 versions: the restore and the flush of the late rows; the bad load's version is gone
    assert "deleted 0 objects" in cli(node, "vacuum")
    assert objects(node) >= bad_file  # the retained version before the restore still reads it
    with pytest.raises(NotFound, match="not retained"):
        c.query(f"SELECT * FROM t AT (VERSION => {v_good})")
    load(c, batch(50, 1, "c"))
    r = c.action("vacuum", {})
    assert r["deleted"] == 2  # the bad load's file and the late rows' file: no retained version reads them
    assert not (objects(node) & bad_file)
    with pytest.raises(NotFound, match="not retained"):
        c.query(f"SELECT * FROM t AT (VERSION => {v_bad})")
    assert c.query("SELECT count(*) AS n FROM t")["n"][0].as_py() == 9
    assert c.action("vacuum", {})["deleted"] == 0  # idempotent
    with pytest.raises(NotFound, match="not retained"):
        c.action("restore_table", {"table": "t", "version": v_bad})


@pytest.mark.parametrize("step", ["restore_flushed", "restore_committed"])
def test_kill_9_during_restore_loses_and_duplicates_nothing(node_factory, step: str) -> None:
    node = node_factory(env={**FAST, "MINIODB_DEBUG_CRASH_AT": step})
    c = node.client()
    first = batch(0, 6, "a")
    v1 = load(c, first)
    load(c, batch(6, 5, "b"))
    c.ingest("t", batch(100, 3, "buffered"))  # acknowledged: in the WAL
    with pytest.raises(Exception):  # noqa: B017 - the node dies in the middle of the call
        c.action("restore_table", {"table": "t", "version": v1})
    node.proc.wait(timeout=30)
    node.env.pop("MINIODB_DEBUG_CRASH_AT")
    node.start()
    c = node.client()
    ids = c.query("SELECT id FROM t ORDER BY id")["id"].to_pylist()
    if step == "restore_committed":
        assert ids == list(range(6))
    else:  # flushed, not restored: every acknowledged row exactly once
        assert ids == [*range(11), 100, 101, 102]
        c.action("restore_table", {"table": "t", "version": v1})
        assert c.query("SELECT id FROM t ORDER BY id")["id"].to_pylist() == list(range(6))

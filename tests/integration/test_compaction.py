"""Compaction against a real node process: 1,000 small flushes compacted while ingest and
queries keep running (file count, every row exactly once, every query consistent), the
``miniodb compact`` command, ``system.files`` and the metrics; and ``kill -9`` in the middle of
a compaction (crash points ``compaction_uploaded`` and ``compaction_committed``).

The nodes run with ``compaction.min_file_age_seconds=0`` (merging fresh files) so the tests do
not wait a minute, and with the background compactor off: passes run through the ``compact``
action when the test says so.
"""

from __future__ import annotations

import re
import threading

import httpx
import pyarrow as pa
import pytest
from click.testing import CliRunner

from clients.cli import main
from clients.errors import MinioDBError
from tests.fixtures.helpers import wait_until

FAST = {"MINIODB_COMPACTION_MIN_FILE_AGE_SECONDS": "0", "MINIODB_COMPACTION_ENABLED": "false",
        "MINIODB_COMPACTION_MIN_FILES": "2", "MINIODB_BUFFER_FLUSH_INTERVAL": "3600"}


def rows(lo: int, hi: int) -> pa.Table:
    ids = pa.array(range(lo, hi), pa.int64())
    return pa.table({"id": ids, "v": pa.compute.multiply(ids, 2), "tag": pa.array([f"t{i % 7}" for i in range(lo, hi)])})


def file_count(client, table: str = "t") -> int:
    return client.query(f"SELECT count(*) AS n FROM system.files WHERE table_name = '{table}'").column("n")[0].as_py()


def all_ids(client) -> list[int]:
    return client.query("SELECT id FROM t ORDER BY id").column("id").to_pylist()


def small_flushes(client, n: int, per: int = 3) -> int:
    """``n`` ingest+flush rounds of ``per`` rows: ``n`` files. Returns the next free id."""
    for i in range(n):
        client.ingest("t", rows(i * per, i * per + per))
        client.flush("t")
    return n * per


@pytest.mark.slow
def test_compaction_under_ingest_and_queries(node_factory):
    node = node_factory(env=FAST)
    c = node.client()
    next_id = small_flushes(c, 1000)
    acked = list(range(next_id))
    files_before = file_count(c)
    assert files_before == 1000

    stop = threading.Event()
    lock = threading.Lock()
    errors: list[str] = []
    checked = [0]

    def ingest():  # keeps writing (and flushing small files) while compaction runs
        nonlocal next_id
        w = node.client()
        i = 0
        while not stop.is_set():
            lo = next_id
            w.ingest("t", rows(lo, lo + 5))
            with lock:
                acked.extend(range(lo, lo + 5))
                next_id = lo + 5
            i += 1
            if i % 4 == 0:
                w.flush("t")

    def query():  # every answer: no duplicate, nothing acknowledged missing, nothing invented
        q = node.client()
        while not stop.is_set():
            with lock:
                lo = len(acked)
            got = q.query("SELECT count(*) AS n, count(DISTINCT id) AS d, min(id) AS mn FROM t").to_pylist()[0]
            with lock:
                hi = len(acked) + 5  # one batch may be visible before its acknowledgement
            if not (got["n"] == got["d"] and lo <= got["n"] <= hi and got["mn"] == 0):
                errors.append(f"query saw {got} with {lo}..{hi} rows acknowledged")
            checked[0] += 1

    threads = [threading.Thread(target=ingest), threading.Thread(target=query)]
    for t in threads:
        t.start()
    try:
        while checked[0] < 1 and not errors and all(t.is_alive() for t in threads):
            threading.Event().wait(0.05)  # the load is running
        before = (checked[0], len(acked))
        first = c.compact("t")["results"]
        during = (checked[0] - before[0], len(acked) - before[1])
        print(f"during compaction: {during[0]} queries answered, {during[1]} rows acknowledged")
        while checked[0] < 5 and not errors and all(t.is_alive() for t in threads):
            threading.Event().wait(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors, errors[:5]
    assert checked[0] >= 5
    [r] = first
    assert r["outcome"] == "compacted" and r["merged_files"] >= 1000 and r["files_before"] >= 1000
    assert r["new_keys"] and r["files_after"] < r["files_before"]
    c.flush("t")
    out = CliRunner().invoke(main, ["--uri", node.flight, "compact", "--table", "t"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    # the files flushed meanwhile merge with the first pass's file
    m = re.fullmatch(r"t: compacted, files (\d+) -> 1 \((\d+) merged into 1, \d+ -> \d+ bytes, (\d+) rows\)\n",
                     out.output)
    assert m, out.output
    assert int(m.group(1)) == int(m.group(2)) and int(m.group(3)) == len(acked)
    files_after = file_count(c)
    assert files_after * 10 <= files_before, (files_before, files_after)
    assert all_ids(c) == sorted(acked)  # every acknowledged row exactly once
    listed = c.query("SELECT key, rows, node_id FROM system.files WHERE table_name = 't'").to_pylist()
    assert len(listed) == 1 and listed[0]["rows"] == len(acked)
    again = CliRunner().invoke(main, ["--uri", node.flight, "compact"], catch_exceptions=False)
    assert again.output == "t: nothing, files 1 -> 1\n"
    metrics = httpx.get(node.metrics + "/metrics").text
    assert f'miniodb_table_files{{table="t"}} {float(files_after)}' in metrics
    assert re.search(r'miniodb_compaction_runs_total\{outcome="compacted"\} [1-9]', metrics)
    assert re.search(r"miniodb_compaction_bytes_total [1-9]", metrics)
    node.kill()  # a restart (WAL replay) changes nothing either
    node.start()
    assert all_ids(node.client()) == sorted(acked)


@pytest.mark.slow
@pytest.mark.parametrize("step", ["compaction_uploaded", "compaction_committed"])
def test_kill_9_in_the_middle_of_compaction(node_factory, step):
    node = node_factory(env={**FAST, "MINIODB_DEBUG_CRASH_AT": step})
    c = node.client()
    next_id = small_flushes(c, 30)
    c.ingest("t", rows(next_id, next_id + 4))  # acknowledged, buffered only (in the WAL)
    acked = list(range(next_id + 4))
    with pytest.raises(MinioDBError):
        c.compact("t")  # the node kills itself at the step
    node.proc.wait(timeout=30)
    assert node.proc.returncode == -9
    node.env.pop("MINIODB_DEBUG_CRASH_AT")
    node.start()
    c = node.client()
    assert all_ids(c) == acked  # nothing lost, nothing twice
    assert file_count(c) == (30 if step == "compaction_uploaded" else 1)
    [r] = c.compact("t")["results"]
    assert r["outcome"] == ("compacted" if step == "compaction_uploaded" else "nothing")
    c.flush("t")
    assert all_ids(c) == acked
    assert file_count(c) == 2
    bad = CliRunner().invoke(main, ["--uri", node.flight, "compact", "--table", "nosuch"])
    assert bad.exit_code != 0 and "not found" in bad.output and "Traceback" not in bad.output, bad.output


def test_the_background_compactor_merges_on_its_interval(node_factory):
    node = node_factory(env={**FAST, "MINIODB_COMPACTION_ENABLED": "true", "MINIODB_COMPACTION_INTERVAL_SECONDS": "0.5"})
    c = node.client()
    next_id = small_flushes(c, 6)
    wait_until(lambda: file_count(c) == 1, timeout=60, what="the background pass merged the six files")
    assert all_ids(c) == list(range(next_id))
    metrics = httpx.get(node.metrics + "/metrics").text
    assert re.search(r'miniodb_compaction_runs_total\{outcome="compacted"\} [1-9]', metrics), metrics
    assert 'miniodb_table_files{table="t"} 1.0' in metrics

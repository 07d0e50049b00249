"""Mixed load: 16 concurrent clients run queries and ingests for 15 s against one node (with
flushes happening underneath, at least once a second); no error, no deadlock, and every
acknowledged row is counted exactly once. Every operation checks its own claim as it runs, so a
longer run only repeats them: ``MINIODB_TEST_LOAD_SECONDS`` sets a longer soak."""

from __future__ import annotations

import os
import random
import threading
import time

import pyarrow as pa
import pytest

from clients import errors

CLIENTS = 16
SECONDS = float(os.environ.get("MINIODB_TEST_LOAD_SECONDS", "15"))  # MINIODB_TEST_LOAD_SECONDS for longer soaks
TABLE = "load_t"


def _batch(worker: int, seq: int, rows: int) -> pa.Table:
    return pa.table({"worker": pa.array([worker] * rows, pa.int64()),
                     "seq": pa.array([seq] * rows, pa.int64()),
                     "v": pa.array(range(rows), pa.int64())})


class Worker(threading.Thread):
    def __init__(self, node, index: int, deadline: float, acked: dict, lock: threading.Lock):
        super().__init__(name=f"load-{index}", daemon=True)
        self.node, self.index, self.deadline = node, index, deadline
        self.acked, self.lock = acked, lock
        self.rows = self.value_sum = self.ops = 0
        self.error: BaseException | None = None
        self.rng = random.Random(index)

    def _ack(self, rows: int, value_sum: int) -> None:
        self.rows += rows
        self.value_sum += value_sum
        with self.lock:
            self.acked["rows"] += rows

    def run(self) -> None:
        try:
            client = self.node.client(timeout=120)
            with self.node.adbc() as conn, conn.cursor() as cur:
                seq = 0
                while time.monotonic() < self.deadline:
                    seq += 1
                    self.ops += 1
                    op = self.rng.random()
                    rows = self.rng.randint(1, 2000)
                    if op < 0.25:
                        assert client.ingest(TABLE, _batch(self.index, seq, rows), mode="append") == rows
                        self._ack(rows, rows * (rows - 1) // 2)
                    elif op < 0.40:
                        assert cur.adbc_ingest(TABLE, _batch(self.index, seq, rows), mode="append") == rows
                        self._ack(rows, rows * (rows - 1) // 2)
                    elif op < 0.50:
                        n = self.rng.randint(1, 20)
                        cur.executemany(f"INSERT INTO {TABLE} VALUES (?, ?, ?)",
                                        [(self.index, seq, i) for i in range(n)])
                        assert cur.rowcount == n
                        self._ack(n, n * (n - 1) // 2)
                    elif op < 0.75:
                        with self.lock:
                            floor = self.acked["rows"]
                        cur.execute(f"SELECT count(*) FROM {TABLE}")
                        assert cur.fetchone()[0] >= floor  # acknowledged rows are visible
                    elif op < 0.90:
                        got = client.query(f"SELECT count(*) AS n, coalesce(sum(v), 0) AS s FROM {TABLE} "
                                           "WHERE worker = ?", [self.index]).to_pylist()[0]
                        assert (got["n"], got["s"]) == (self.rows, self.value_sum)  # own rows, exactly
                    elif op < 0.95:
                        cur.execute(f"SELECT worker, count(*) FROM {TABLE} GROUP BY worker")
                        assert len(cur.fetchall()) <= CLIENTS
                    else:
                        assert any(t["name"] == TABLE for t in client.tables())
                        conn.adbc_get_objects(depth="columns").read_all()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


@pytest.mark.slow
def test_mixed_load_16_clients(node_factory):
    node = node_factory(env={"MINIODB_BUFFER_SIZE": "20000", "MINIODB_BUFFER_FLUSH_INTERVAL": "1"})
    client = node.client()
    client.execute(f"CREATE TABLE {TABLE} (worker BIGINT, seq BIGINT, v BIGINT)")
    acked, lock = {"rows": 0}, threading.Lock()
    deadline = time.monotonic() + SECONDS
    workers = [Worker(node, i, deadline, acked, lock) for i in range(CLIENTS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=SECONDS + 300)
    stuck = [w.name for w in workers if w.is_alive()]
    assert not stuck, f"deadlock: {stuck} still running\n{node.log()}"
    failed = [(w.name, repr(w.error)) for w in workers if w.error is not None]
    assert not failed, failed
    total = sum(w.rows for w in workers)
    assert total == acked["rows"] and total > 0
    got = {r["worker"]: (r["n"], r["s"]) for r in client.query(
        f"SELECT worker, count(*) AS n, sum(v) AS s FROM {TABLE} GROUP BY worker").to_pylist()}
    assert got == {w.index: (w.rows, w.value_sum) for w in workers if w.rows}
    assert sum(w.ops for w in workers) > CLIENTS
    client.flush(TABLE)  # after a flush the same rows, now from Parquet
    assert client.query(f"SELECT count(*) AS n FROM {TABLE}").column("n").to_pylist() == [total]
    with pytest.raises(errors.InvalidRequest):
        client.query("SELECT * FROM")  # still answering cleanly

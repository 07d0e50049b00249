"""The local-read shape's row shipping: a peer's buffered rows, filtered by the plan's condition on
the table and with the columns the statement never reads nulled, give the statement's answer."""

from __future__ import annotations

import random

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from flight_server.coordinator.peer import PeerService, from_ipc, to_ipc
from flight_server.coordinator.plan import plan
from tests.unit.test_coordinator_plan import AGGREGATES, DATA, ROWS, TOPN, _ordered, assert_same, run_single


class _Engine:
    def cursor(self):
        return duckdb.connect()


def shipper() -> PeerService:
    peer = PeerService.__new__(PeerService)  # only _shipped is used: it needs the engine's cursor
    peer.engine = _Engine()
    return peer


def _distributed_with_one_answer(sql: str) -> bool:
    """Statements the planner distributes and whose answer is unique (no random(), no LIMIT
    without a total order): the ones a local-read must answer exactly as one node does."""
    shape = plan(sql, {name: t.schema for name, t in DATA.items()}).shape
    return shape != "local" and "random()" not in sql and not ("LIMIT" in sql.upper() and not _ordered(sql))


@pytest.mark.parametrize("sql", [s for s in AGGREGATES + TOPN + ROWS if _distributed_with_one_answer(s)])
def test_files_plus_shipped_rows_give_the_single_node_answer(sql):
    p = plan(sql, {name: t.schema for name, t in DATA.items()})
    rng = random.Random(len(sql))
    peer = shipper()
    mixed = {}
    for name, table in DATA.items():
        if name not in p.rows:
            mixed[name] = table
            continue
        buffered = pa.array([rng.random() < 0.5 for _ in range(table.num_rows)])
        files, buffer = table.filter(pc.invert(buffered)), table.filter(buffered)
        shipped = from_ipc_roundtrip(peer._shipped(buffer, p.rows[name]))
        assert shipped.schema.equals(table.schema) and shipped.num_rows <= buffer.num_rows
        mixed[name] = pa.concat_tables([files, shipped])
    assert_same(run_single(sql, mixed), run_single(sql, DATA), _ordered(sql))


def from_ipc_roundtrip(table: pa.Table) -> pa.Table:
    import base64

    return from_ipc(base64.b64encode(to_ipc(table)).decode())


def test_shipped_rows_are_filtered_and_projected():
    sql = "SELECT g, sum(v) AS s FROM t WHERE v > 0 AND h = 1 GROUP BY g"
    p = plan(sql, {name: t.schema for name, t in DATA.items()})
    spec = p.rows["t"]
    assert sorted(spec["columns"]) == ["g", "h", "v"] and spec["where"]
    shipped = shipper()._shipped(DATA["t"], spec)
    want = DATA["t"].filter(pc.and_(pc.greater(DATA["t"]["v"], 0), pc.equal(DATA["t"]["h"], 1)))
    assert shipped.num_rows == want.num_rows > 0
    assert shipped["id"].null_count == shipped.num_rows  # never read: not shipped
    assert shipped["v"].to_pylist() == want["v"].to_pylist()


def test_a_condition_duckdb_cannot_evaluate_here_ships_every_row():
    shipped = shipper()._shipped(DATA["t"], {"columns": ["v"], "where": "no_such_function(v) > 0"})
    assert shipped.num_rows == DATA["t"].num_rows

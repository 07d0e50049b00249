"""Pure parts of the Flight SQL layer: LIKE patterns, catalog names, handles, sessions, DML
splitting, batch sizing."""

from __future__ import annotations

import pyarrow as pa
import pytest

from clients.errors import InvalidRequest, NotFound
from clients.protocol import flight_pb2
from flight_server.dml import _all_placeholders, param_rows, target_name
from flight_server.flightsql import metadata_commands as md
from flight_server.flightsql.prepared import PreparedStatement, PreparedStatements, parse_handle
from flight_server.flightsql.sessions import SessionStore, session_cookie
from flight_server.query.engine import QueryResult, batch_rows_for
from flight_server.query.statement import statement, strip_catalog


@pytest.mark.parametrize(("pattern", "value", "ok"), [
    ("%", "anything", True), ("t_", "t1", True), ("t_", "t12", False), ("T%", "trips", True),
    ("a\\_b", "a_b", True), ("a\\_b", "axb", False), ("100\\%", "100%", True), ("x.y", "xzy", False),
])
def test_like_patterns(pattern, value, ok):
    assert (md.like(pattern).fullmatch(value) is not None) is ok


def test_tables_filters_and_schema_metadata():
    tables = [("main", "b_t", "TABLE", pa.schema([("x", pa.int64())])),
              ("main", "a_t", "TABLE", pa.schema([("d", pa.decimal128(10, 2)), ("s", pa.string())]))]
    t = md.tables_table(tables, None, None, None, [], include_schema=True)
    assert t.column("table_name").to_pylist() == ["a_t", "b_t"] and t.schema.equals(md.TABLES_WITH_SCHEMA_SCHEMA)
    schema = pa.ipc.read_schema(pa.py_buffer(t.column("table_schema")[0].as_py()))
    assert schema.field("d").metadata[b"ARROW:FLIGHT:SQL:TYPE_NAME"] == b"DECIMAL(10,2)"
    assert schema.field("s").metadata[b"ARROW:FLIGHT:SQL:TABLE_NAME"] == b"a_t"
    assert md.tables_table(tables, "", None, None, [], False).num_rows == 0  # no catalog-less tables
    assert md.tables_table(tables, "MinIODB", "ma%", "b%", ["table"], False).num_rows == 1
    assert md.db_schemas_table(tables, "other", None).num_rows == 0


@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT * FROM miniodb.main.t", "SELECT * FROM main.t"),
    ("SELECT * FROM MINIODB.t JOIN u ON true", "SELECT * FROM t JOIN u ON TRUE"),
    ("SELECT 'miniodb' AS x", "SELECT 'miniodb' AS x"),
    ("SELECT * FROM t", "SELECT * FROM t"),
])
def test_strip_catalog(sql, expected):
    assert strip_catalog(sql) == expected


def test_one_analysis_per_statement_text():
    st = statement("SELECT count(*) FROM miniodb.main.t WHERE a > 5")
    assert statement("SELECT count(*) FROM miniodb.main.t WHERE a > 5") is st  # computed once
    assert st.sql == "SELECT COUNT(*) FROM main.t WHERE a > 5" and st.kind == "SELECT" and not st.is_update
    assert st.tables == ("t",) and st.cacheable and st.digest
    assert st.analysis.tables["t"].constraint_sets[0][0].op == ">"
    ins = statement("INSERT INTO t VALUES ($1, $2)")
    assert ins.is_update and ins.param_count == 2 and ins.analysis is None and not ins.digest
    with pytest.raises(InvalidRequest, match="exactly one"):
        statement("SELECT 1; SELECT 2")


def test_target_names():
    import sqlglot

    def name(sql):
        return target_name(sqlglot.parse_one(sql, read="duckdb").find(sqlglot.exp.Table))

    assert name("DROP TABLE miniodb.main.t") == "t"
    assert name("DROP TABLE main.t") == "t"
    with pytest.raises(NotFound):
        name("DROP TABLE other.main.t")
    with pytest.raises(NotFound):
        name("DROP TABLE nope.t")


def test_placeholders_and_param_rows():
    import sqlglot

    def values(sql):
        return sqlglot.parse_one(sql, read="duckdb").expression

    assert _all_placeholders(values("INSERT INTO t VALUES (?, ?)"))
    assert not _all_placeholders(values("INSERT INTO t VALUES (?, 1)"))
    assert not _all_placeholders(values("INSERT INTO t VALUES (?), (?)"))
    assert param_rows(pa.table({"a": [1, 2], "b": ["x", None]})) == [[1, "x"], [2, None]]
    assert param_rows(None) == []


def test_prepared_handles_carry_sql_and_small_params():
    stmt = PreparedStatement("id1", "SELECT ?", "SELECT", False, 1, None, pa.schema([]),
                             params=pa.table({"p": [1]}))
    handle = parse_handle(stmt.handle())
    assert (handle.id, handle.sql, handle.params.to_pylist()) == ("id1", "SELECT ?", [{"p": 1}])
    with pytest.raises(InvalidRequest):
        parse_handle(b"{}")
    now = [0.0]
    registry = PreparedStatements(idle_ttl=10, clock=lambda: now[0])
    registry.add(stmt)
    assert registry.get(handle) is stmt
    now[0] = 100.0
    registry.add(PreparedStatement("id2", "SELECT 1", "SELECT", False, 0, None, pa.schema([])))
    assert registry.get(handle) is None  # idle too long


def test_sessions_by_cookie_or_peer():
    store = SessionStore(lambda: ["main", "system"])
    req = flight_pb2.SetSessionOptionsRequest()
    req.session_options["schema"].string_value = "SYSTEM"
    req.session_options["catalog"].string_value = "nope"
    result, sid = store.set(("", "peer:a"), req)
    assert sid and set(result.errors) == {"catalog"}
    assert store.options((f"cookie:{sid}", "peer:b"))["schema"] == "system"  # found by cookie
    assert store.options(("", "peer:a"))["schema"] == "system"  # found by peer
    assert store.options(("", "peer:c"))["schema"] == "main"  # default
    store.close(("", "peer:a"))
    assert store.options((f"cookie:{sid}", "peer:b"))["schema"] == "main"
    assert session_cookie(f"a=1; arrow_flight_session_id={sid}") == sid


def test_batch_rows_follow_the_width():
    assert batch_rows_for(["BIGINT"] * 4, 262144) == 4 * 1024 * 1024 // 36
    assert batch_rows_for(["VARCHAR"] * 40, 262144) == 4 * 1024 * 1024 // (40 * 65)
    assert batch_rows_for(["INTEGER"], 65536) == 65536


class _Result(QueryResult):
    """A QueryResult whose end hooks and close are counted."""

    def __init__(self, reader, keep_bytes=0):
        super().__init__(reader, "SELECT", keep_bytes=keep_bytes)
        self.closed = 0
        self.ends: list = []
        self.failures: list = []
        self.complete = lambda rows, nbytes, batches: self.ends.append((rows, nbytes, batches))
        self.failed = self.failures.append

    def close(self):
        self.closed += 1


def _reader(batches, schema=pa.schema([("x", pa.int64())])):
    return pa.RecordBatchReader.from_batches(schema, iter(batches))


def test_prefetch_keeps_a_small_result_whole_and_releases_it():
    from flight_server.flightsql.results import Execution

    batches = [pa.record_batch([pa.array(range(i * 10, i * 10 + 10))], names=["x"]) for i in range(3)]
    ex = Execution("q", _Result(_reader(batches)))
    ex.prefetch(1 << 20)
    assert ex.table is not None and ex.table.column("x").to_pylist() == list(range(30))
    assert ex.head == [] and ex.first.closed == 1  # the cursor went back at once
    (rows, nbytes, kept), = ex.first.ends  # its end is known: rows for the log, batches for the cache
    assert rows == 30 and nbytes == sum(b.nbytes for b in batches) and len(kept) == 3


def test_prefetch_takes_a_result_in_memory_as_it_is():
    from flight_server.flightsql.results import Execution

    table = pa.table({"x": [1, 2, 3]})
    result = _Result(table.to_reader())
    result.table = table  # a cache hit
    ex = Execution("q", result)
    ex.prefetch(1 << 20)
    assert ex.table is table and result.ends == [(3, table.nbytes, None)] and result.closed == 1


def test_prefetch_stops_at_the_limit_and_the_stream_goes_on_from_there():
    from flight_server.flightsql.results import Execution
    from flight_server.flightsql.streaming import stream_execution

    batches = [pa.record_batch([pa.array(range(i * 1000, i * 1000 + 1000))], names=["x"]) for i in range(10)]
    ex = Execution("q", _Result(_reader(batches)))
    ex.prefetch(2 * batches[0].nbytes)  # reads 3 batches (stops once over the limit)
    assert ex.table is None and len(ex.head) == 3 and ex.first.closed == 0 and ex.first.ends == []
    stream = stream_execution(ex, lambda *_: None, lambda: None)
    assert isinstance(stream, pa.flight.GeneratorStream)


def test_streamed_result_is_sliced_counted_and_reported_at_its_end():
    from flight_server.flightsql.streaming import result_batches

    big = pa.record_batch([pa.array(range(10_000))], names=["x"])  # 80 kB
    head = [pa.record_batch([pa.array([1, 2])], names=["x"])]
    result = _Result(_reader([big]), keep_bytes=1 << 20)
    out = list(result_batches(result, head, max_bytes=16_000))
    assert sum(b.num_rows for b in out) == 10_002 and max(b.nbytes for b in out) <= 16_000
    (rows, nbytes, kept), = result.ends
    assert rows == 10_002 and nbytes == big.nbytes + head[0].nbytes and len(kept) == 2
    small_keep = _Result(_reader([big]), keep_bytes=1000)  # too large for the cache: nothing kept
    list(result_batches(small_keep, [], max_bytes=1 << 20))
    assert small_keep.ends == [(10_000, big.nbytes, None)]


def test_streamed_result_failure_is_reported():
    from flight_server.flightsql.streaming import result_batches

    def failing():
        yield pa.record_batch([pa.array([1])], names=["x"])
        raise OSError("Conversion Error: could not convert string 'x' to INT64")

    result = _Result(_reader(failing()))
    with pytest.raises(OSError):
        list(result_batches(result, [], max_bytes=1 << 20))
    assert result.ends == [] and len(result.failures) == 1


def test_prefetch_error_is_a_client_error_and_releases_the_result():
    from flight_server.flightsql.results import Execution

    def failing():
        yield pa.record_batch([pa.array([1])], names=["x"])
        raise OSError("Conversion Error: could not convert string 'x' to INT64")

    ex = Execution("q", _Result(_reader(failing())))
    with pytest.raises(InvalidRequest, match="Conversion Error"):
        ex.prefetch(1 << 20)
    assert ex.first.closed == 1 and len(ex.first.failures) == 1


def test_quiet_tracebacks_hold_for_handlers_and_stream_generators(monkeypatch):
    """A pyarrow fact the server relies on: with ``sys.tracebacklimit = 0`` an ArrowInvalid,
    ArrowKeyError or NotImplementedError keeps its gRPC code and loses its traceback, raised
    by a handler or by a DoGet stream's generator."""
    import sys
    import threading

    import pyarrow.flight as flight

    from flight_server.flightsql.errors import quiet_tracebacks

    errors = {"invalid": pa.ArrowInvalid, "not_found": pa.ArrowKeyError, "unimplemented": NotImplementedError}

    class Server(flight.FlightServerBase):
        def do_get(self, context, ticket):
            where, name = ticket.ticket.decode().split(":")
            if where == "handler":
                raise errors[name](f"{name} in a handler")

            def gen():
                yield pa.record_batch([pa.array([1])], names=["x"])
                raise errors[name](f"{name} in a stream")

            return flight.GeneratorStream(pa.schema([("x", pa.int64())]), gen())

    monkeypatch.setattr(sys, "tracebacklimit", 1000, raising=False)  # restored after the test
    quiet_tracebacks()
    server = Server("grpc://127.0.0.1:0")
    threading.Thread(target=server.serve, daemon=True).start()
    client = flight.connect(f"grpc://127.0.0.1:{server.port}")
    expected = {"invalid": pa.ArrowInvalid, "not_found": pa.ArrowKeyError,
                "unimplemented": pa.ArrowNotImplementedError}
    try:
        for where in ("handler", "stream"):
            for name, cls in expected.items():
                with pytest.raises(cls, match=f"{name} in a {where}") as exc:
                    client.do_get(flight.Ticket(f"{where}:{name}".encode())).read_all()
                message = str(exc.value)
                assert "Traceback" not in message and '.py"' not in message and "line " not in message, message
    finally:
        client.close()
        server.shutdown()


def test_cancel_a_query_by_its_query_log_id():
    from types import SimpleNamespace

    from flight_server.flightsql.results import Execution, PendingResults

    pending = PendingResults()
    waiting = _Result(_reader([]))
    waiting.record = SimpleNamespace(query_id="q-waiting")
    streaming = _Result(_reader([]))
    streaming.record = SimpleNamespace(query_id="q-streaming")
    interrupted: list[str] = []
    streaming.interrupt = lambda: interrupted.append("q-streaming")
    h1 = pending.put(Execution("a", waiting))
    pending.running("h2", streaming)
    assert pending.cancel_query("q-unknown") is False
    assert pending.cancel_query("q-waiting") is True  # waiting for its DoGet: released, never run
    assert waiting.closed == 1 and pending.outcome(h1) == PendingResults.CANCELLED
    assert pending.cancel_query("q-streaming") is True and interrupted == ["q-streaming"]
    pending.finished("h2")  # the stream ended (cancelled): nothing left to cancel
    assert pending.cancel_query("q-streaming") is False

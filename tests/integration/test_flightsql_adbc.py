"""ADBC DB-API against a real node: queries, parameters, metadata, bulk ingest, DDL/DML."""

from __future__ import annotations

import adbc_driver_manager
import pyarrow as pa
import pytest

from tests.fixtures.node import NodeProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    node = NodeProcess(tmp_path_factory.mktemp("adbc")).start()
    yield node
    if node.terminate() != 0:
        print(node.log())


@pytest.fixture
def conn(server):
    with server.adbc() as c:
        yield c


def _table(n: int = 5) -> pa.Table:
    return pa.table({"id": pa.array(range(n), pa.int64()), "name": [f"n{i}" for i in range(n)],
                     "score": [i * 1.5 for i in range(n)]})


def test_execute_and_every_fetch(server, conn):
    server.client().ingest("fetch_t", _table(5), mode="replace")
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM fetch_t ORDER BY id")
        table = cur.fetch_arrow_table()
        assert table.column("id").to_pylist() == [0, 1, 2, 3, 4]
        assert table.schema.field("name").type == pa.string()
        cur.execute("SELECT id, name FROM fetch_t WHERE id < 2 ORDER BY id")
        assert cur.fetchall() == [(0, "n0"), (1, "n1")]
        cur.execute("SELECT avg(score) AS s FROM fetch_t")
        df = cur.fetch_df()
        assert list(df.columns) == ["s"] and df["s"][0] == pytest.approx(3.0)
        cur.execute("SELECT * FROM miniodb.main.fetch_t WHERE id = 4")  # names from GetTables resolve
        assert cur.fetchone() == (4, "n4", 6.0)


def test_parameters_and_executemany(server, conn):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE params_t (id BIGINT, name VARCHAR, ts TIMESTAMP)")
        cur.executemany("INSERT INTO params_t VALUES (?, ?, ?)",
                        [(1, "a", None), (2, "b", None), (3, None, None)])
        assert cur.rowcount == 3
        cur.execute("INSERT INTO params_t (id, name) VALUES (?, ?)", (4, "d"))
        assert cur.rowcount == 1
        cur.execute("SELECT id, name FROM params_t WHERE id >= ? AND name IS NOT NULL ORDER BY id", (2,))
        assert cur.fetchall() == [(2, "b"), (4, "d")]
        cur.execute("SELECT count(*) FROM params_t WHERE name = ?", ("a",))  # re-prepared, rebound
        assert cur.fetchone() == (1,)
        cur.execute("SELECT * FROM range(?)", (3,))  # result schema depends on the value
        assert [r[0] for r in cur.fetchall()] == [0, 1, 2]
        cur.execute("INSERT INTO params_t SELECT id + ?, name, ts FROM params_t WHERE id <= ?", (100, 2))
        assert cur.rowcount == 2
        cur.execute("SELECT count(*), max(id) FROM params_t")
        assert cur.fetchone() == (6, 102)


def test_get_info_and_table_types(conn):
    info = conn.adbc_get_info()
    assert info["vendor_name"] == "MinIODB"
    assert info["vendor_arrow_version"] == pa.__version__
    assert conn.adbc_get_table_types() == ["TABLE"]


@pytest.mark.parametrize("depth", ["all", "catalogs", "db_schemas", "tables", "columns"])
def test_get_objects_every_depth(server, conn, depth):
    server.client().ingest("objects_t", _table(2), mode="replace")
    objects = conn.adbc_get_objects(depth=depth).read_all().to_pylist()
    assert [c["catalog_name"] for c in objects] == ["miniodb"]
    schemas = objects[0]["catalog_db_schemas"]
    if depth == "catalogs":
        assert not schemas
        return
    main = next(s for s in schemas if s["db_schema_name"] == "main")
    if depth == "db_schemas":
        assert not main["db_schema_tables"]
        return
    tables = {t["table_name"]: t for t in main["db_schema_tables"]}
    assert tables["objects_t"]["table_type"] == "TABLE"
    columns = tables["objects_t"]["table_columns"]
    if depth == "tables":
        assert not columns
    else:
        assert [c["column_name"] for c in columns] == ["id", "name", "score"]
        assert [c["ordinal_position"] for c in columns] == [1, 2, 3]
        assert [c["xdbc_type_name"] for c in columns] == ["BIGINT", "VARCHAR", "DOUBLE"]


def test_get_objects_filters(server, conn):
    client = server.client()
    client.ingest("filt_abc", _table(1), mode="replace")
    client.ingest("filt_xyz", _table(1), mode="replace")
    found = conn.adbc_get_objects(depth="tables", table_name_filter="filt\\_a%").read_all().to_pylist()
    names = [t["table_name"] for s in found[0]["catalog_db_schemas"] for t in s["db_schema_tables"]]
    assert names == ["filt_abc"]
    none = conn.adbc_get_objects(depth="tables", db_schema_filter="nope%").read_all().to_pylist()
    assert all(not s["db_schema_tables"] for c in none for s in c["catalog_db_schemas"])


def test_get_table_schema(server, conn):
    server.client().ingest("schema_t", _table(1), mode="replace")
    schema = conn.adbc_get_table_schema("schema_t")
    assert schema.names == ["id", "name", "score"]
    assert schema.field("score").type == pa.float64()
    with pytest.raises(adbc_driver_manager.Error):
        conn.adbc_get_table_schema("no_such_table")


def test_ingest_all_four_modes(conn):
    data = _table(3)
    with conn.cursor() as cur:
        assert cur.adbc_ingest("modes_t", data, mode="create") == 3
        with pytest.raises(adbc_driver_manager.Error, match="already exists"):
            cur.adbc_ingest("modes_t", data, mode="create")
        assert cur.adbc_ingest("modes_t", data, mode="append") == 3
        with pytest.raises(adbc_driver_manager.Error, match="not found"):
            cur.adbc_ingest("modes_missing", data, mode="append")
        assert cur.adbc_ingest("modes_t", data, mode="create_append") == 3
        assert cur.adbc_ingest("modes_new", data, mode="create_append") == 3
        cur.execute("SELECT count(*) FROM modes_t")
        assert cur.fetchone() == (9,)
        assert cur.adbc_ingest("modes_t", pa.table({"other": [1, 2]}), mode="replace") == 2
        cur.execute("SELECT * FROM modes_t")
        assert cur.fetch_arrow_table().column_names == ["other"]


def test_ddl_takes_effect_without_fetch(server, conn):
    client = server.client()
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE ddl_t (id BIGINT, label VARCHAR)")  # never fetched
    assert any(t["name"] == "ddl_t" for t in client.tables())
    assert [c["type"] for c in client.describe("ddl_t")["schema"]] == ["int64", "string"]
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS ddl_t (x INT)")  # no-op
        cur.execute("INSERT INTO ddl_t VALUES (1, 'one'), (2, 'two')")
        assert cur.rowcount == 2
    assert client.query("SELECT count(*) AS n FROM ddl_t").column("n").to_pylist() == [2]
    with conn.cursor() as cur:
        cur.execute("CREATE OR REPLACE TABLE ddl_copy AS SELECT id * 10 AS id FROM ddl_t")
        assert cur.rowcount == 2
        cur.execute("DROP TABLE ddl_t")
        cur.execute("DROP TABLE IF EXISTS ddl_t")
    names = {t["name"] for t in client.tables()}
    assert "ddl_t" not in names and "ddl_copy" in names
    assert sorted(client.query("SELECT id FROM ddl_copy").column("id").to_pylist()) == [10, 20]


def test_cursor_reuse_after_ingest(conn):
    """ADBC keeps the ingested data bound to the statement after ``adbc_ingest``; a later
    ``execute`` on the same cursor only works because the server supports prepared
    statements (without them the Go driver falls back to an unprepared query and rejects the
    stale binding with "INVALID_STATE: must set IngestTargetTable before bulk ingestion")."""
    with conn.cursor() as cur:
        assert cur.adbc_ingest("reuse_t", _table(4), mode="replace") == 4
        cur.execute("SELECT count(*) FROM reuse_t")
        assert cur.fetchone() == (4,)
        cur.execute("SELECT name FROM reuse_t WHERE id = ?", (3,))
        assert cur.fetchone() == ("n3",)
        cur.execute("INSERT INTO reuse_t (id) VALUES (99)")
        assert cur.adbc_ingest("reuse_t", _table(1), mode="append") == 1
        cur.execute("SELECT count(*) FROM reuse_t")
        assert cur.fetchone() == (6,)


def test_unsupported_dml_forms_are_unimplemented(server, conn):
    server.client().ingest("dml_t", _table(2), mode="replace")
    with conn.cursor() as cur:
        for sql in ("DELETE FROM dml_t USING reuse_t WHERE dml_t.id = reuse_t.id",
                    "UPDATE dml_t SET name = 'x' FROM reuse_t WHERE dml_t.id = reuse_t.id"):
            with pytest.raises(adbc_driver_manager.NotSupportedError, match="is not supported; supported are"):
                cur.execute(sql)
        cur.execute("SELECT count(*) FROM dml_t")  # the cursor still works, nothing changed
        assert cur.fetchone() == (2,)


def test_bad_sql_errors(conn):
    with conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.ProgrammingError, match="nope_table"):
            cur.execute("SELECT * FROM nope_table")
        with pytest.raises(adbc_driver_manager.Error, match="COPY is not allowed"):
            cur.execute("COPY (SELECT 1) TO '/tmp/out.csv'")
        with pytest.raises(adbc_driver_manager.Error, match="temporary tables"):
            cur.execute("CREATE TEMP TABLE tmp_t (a INT)")
        with pytest.raises(adbc_driver_manager.NotSupportedError, match="CREATE VIEW"):
            cur.execute("CREATE VIEW v AS SELECT 1")
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)


def test_current_catalog_and_schema(conn):
    assert conn.adbc_current_catalog == "miniodb"
    assert conn.adbc_current_db_schema == "main"
    conn.adbc_current_db_schema = "main"
    with pytest.raises(adbc_driver_manager.Error, match="invalid value"):
        conn.adbc_current_catalog = "elsewhere"


def test_wide_rows_stream_under_the_message_cap(server, conn):
    """ADBC refuses gRPC messages over 16 MiB: 1 MiB rows still arrive (batches are sliced)."""
    blob = "x" * (1024 * 1024)
    server.client().ingest("wide_t", pa.table({"id": list(range(24)), "body": [blob] * 24}), mode="replace")
    with conn.cursor() as cur:
        cur.execute("SELECT id, body FROM wide_t ORDER BY id")
        table = cur.fetch_arrow_table()
    assert table.num_rows == 24 and table.column("body")[23].as_py() == blob

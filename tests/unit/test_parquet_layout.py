"""How a flush lays out a data file: DECIMAL columns as INT64 (DuckDB decodes those several
times faster than pyarrow's default FIXED_LEN_BYTE_ARRAY), exact round trip, and the per row
group min/max statistics DuckDB prunes on (e.g. TPC-H Q6's range on l_shipdate), and
dictionaries on the repetitive columns only."""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flight_server.persist import ROW_GROUP_ROWS
from tests.fixtures.write_path import WritePath

ROWS = ROW_GROUP_ROWS + 1000  # two row groups


def _flushed_file(root: Path, table: pa.Table) -> Path:
    node = WritePath(root, buffer_rows=10_000_000)
    node.ingestor.ingest("lineitem", table, table.schema)
    node.flusher.flush_table("lineitem")
    files = node.metadata.list_files("lineitem")
    assert len(files) == 1
    path = root / "objects" / files[0].key
    assert path.is_file()
    return path


def _lineitem() -> pa.Table:
    cents = [(i * 7919) % 10_000_000 - 50 for i in range(ROWS)]  # a few negative ones too
    start = dt.date(1992, 1, 1)
    return pa.table({
        "l_extendedprice": pa.array([decimal.Decimal(c).scaleb(-2) for c in cents], pa.decimal128(15, 2)),
        "l_shipdate": pa.array([start + dt.timedelta(days=i * 2526 // ROWS) for i in range(ROWS)], pa.date32()),
    })


def test_flushed_decimal_is_int64_exact_and_has_statistics(tmp_path: Path) -> None:
    source = _lineitem()
    path = _flushed_file(tmp_path, source)
    f = pq.ParquetFile(path)
    price = f.schema.column(0)
    assert price.physical_type == "INT64"
    assert f.schema_arrow.field("l_extendedprice").type == pa.decimal128(15, 2)
    assert f.metadata.num_row_groups == 2
    for rg in range(f.metadata.num_row_groups):
        for col in range(2):
            stats = f.metadata.row_group(rg).column(col).statistics
            assert stats is not None and stats.has_min_max
    # the date statistics follow the data, so the row groups can be pruned by date
    first, second = (f.metadata.row_group(rg).column(1).statistics for rg in range(2))
    assert first.min == dt.date(1992, 1, 1) and first.max <= second.min
    # exact round trip, through pyarrow and through DuckDB
    back = pq.read_table(path)
    assert back.column("l_extendedprice").equals(source.column("l_extendedprice"))
    assert back.column("l_shipdate").equals(source.column("l_shipdate"))
    con = duckdb.connect()
    con.register("source", source)
    want = con.execute("SELECT sum(l_extendedprice)::VARCHAR, min(l_extendedprice)::VARCHAR FROM source").fetchall()
    got = con.execute(f"SELECT sum(l_extendedprice)::VARCHAR, min(l_extendedprice)::VARCHAR "
                      f"FROM read_parquet('{path}')").fetchall()
    assert got == want
    con.close()


def test_flush_dictionary_encodes_repetitive_columns_only(tmp_path: Path) -> None:
    rows = 20_000
    source = pa.table({
        "discount": pa.array([decimal.Decimal(i % 11).scaleb(-2) for i in range(rows)], pa.decimal128(15, 2)),
        "quantity": pa.array([i % 50 for i in range(rows)], pa.int64()),
        "id": pa.array([i * 2654435761 % (1 << 40) for i in range(rows)], pa.int64()),  # all distinct
        "price": pa.array([i * 1.37 for i in range(rows)], pa.float64()),
        "flag": pa.array(["AB"[i % 2] for i in range(rows)], pa.string()),
    })
    f = pq.ParquetFile(_flushed_file(tmp_path, source))
    rg = f.metadata.row_group(0)
    dictionary = {rg.column(i).path_in_schema for i in range(rg.num_columns) if rg.column(i).has_dictionary_page}
    assert dictionary == {"discount", "quantity", "flag"}
    back = f.read()
    for name in source.column_names:
        assert back.column(name).equals(source.column(name)), name


def test_flushed_file_is_lz4_and_duckdb_prunes_row_groups_by_date(tmp_path: Path) -> None:
    """LZ4_RAW (cheap for DuckDB to decompress), and a date range that misses the first row
    group reads only the second (TPC-H Q6/Q14 shape: a range on l_shipdate)."""
    source = _lineitem()
    path = _flushed_file(tmp_path, source)
    con = duckdb.connect()
    codecs = con.execute("SELECT DISTINCT compression FROM parquet_metadata(?)", [str(path)]).fetchall()
    assert codecs == [("LZ4_RAW",)]
    since = pq.ParquetFile(path).metadata.row_group(1).column(1).statistics.min + dt.timedelta(days=1)
    sql = f"SELECT count(*) FROM read_parquet('{path}') WHERE l_shipdate >= DATE '{since}'"
    plan = con.execute("EXPLAIN ANALYZE " + sql).fetchall()[0][1]
    assert "Row Groups Scanned: 1 / 2" in plan.replace("\u2502", " "), plan
    want = source.filter(pc.greater_equal(source.column("l_shipdate"), pa.scalar(since, pa.date32()))).num_rows
    assert con.execute(sql).fetchone()[0] == want > 0
    con.close()

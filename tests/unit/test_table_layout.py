"""A table's layout (flight_server/layout.py) as write_table_file applies it: rows sorted by the
sort key with ``sorting_columns`` in the footer, bloom filters on the declared columns that
never hide a matching row (DuckDB probes them for equality), properties checked at creation."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clients.errors import InvalidRequest
from flight_server import persist
from flight_server.catalog import Catalog
from flight_server.layout import Layout, layout_of
from flight_server.metadata.base import TableConfig, TableInfo
from flight_server.metadata.sqlite import SQLiteMetadataStore
from flight_server.persist import write_table_file

SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string()), ("v", pa.float64()),
                    ("tags", pa.list_(pa.string()))])


def _info(**props: str) -> TableInfo:
    return TableInfo("t", "id1", SCHEMA, TableConfig(properties=props))


def _table(ids: list[int | None]) -> pa.Table:
    return pa.table({"id": pa.array(ids, pa.int64()), "name": [f"n{i}" for i in range(len(ids))],
                     "v": [float(i) for i in range(len(ids))], "tags": [["x"]] * len(ids)}, schema=SCHEMA)


def test_layout_of_reads_the_properties_case_insensitively():
    assert layout_of({"sort_key": " ID , name", "bloom_filter_columns": "Name"}, SCHEMA) == \
        Layout(("id", "name"), ("name",))
    assert layout_of({}, SCHEMA) == Layout()


@pytest.mark.parametrize("props, message", [
    ({"sort_key": "nope"}, "not a column"),
    ({"sort_key": "tags"}, "not supported"),
    ({"bloom_filter_columns": "id,id"}, "twice"),
])
def test_bad_layout_properties_are_refused_at_creation_and_ignored_by_a_flush(tmp_path, props, message):
    with pytest.raises(InvalidRequest, match=message):
        layout_of(props, SCHEMA, strict=True)
    catalog = Catalog(SQLiteMetadataStore(tmp_path / "meta.sqlite3"))
    with pytest.raises(InvalidRequest, match=message):
        catalog.create("t", SCHEMA, TableConfig(properties=props))
    assert catalog.find("t") is None
    write_table_file(_table([2, 1]), tmp_path / "f.parquet", _info(**props))  # never fails a flush


def test_sorted_by_the_key_with_nulls_last_and_sorting_columns_in_the_footer(tmp_path: Path):
    path = tmp_path / "f.parquet"
    data = _table([5, None, 3, 9, 1, 3])
    written = write_table_file(data, path, _info(sort_key="id,name"))
    back = pq.read_table(path)
    assert back.column("id").to_pylist() == [1, 3, 3, 5, 9, None]
    assert back.equals(written)
    assert sorted(back.to_pylist(), key=repr) == sorted(data.to_pylist(), key=repr)  # same rows
    meta = pq.ParquetFile(path).metadata
    assert meta.row_group(0).sorting_columns == (pq.SortingColumn(0, False, False), pq.SortingColumn(1, False, False))


def test_no_layout_writes_rows_as_they_come(tmp_path: Path):
    path = tmp_path / "f.parquet"
    write_table_file(_table([5, 1, 3]), path, _info())
    assert pq.read_table(path).column("id").to_pylist() == [5, 1, 3]
    assert pq.ParquetFile(path).metadata.row_group(0).sorting_columns == ()
    write_table_file(_table([5, 1, 3]), path, None)  # a table dropped meanwhile
    assert pq.read_table(path).column("id").to_pylist() == [5, 1, 3]


def test_bloom_filters_are_written_for_the_declared_columns_only(tmp_path: Path):
    path = tmp_path / "f.parquet"
    write_table_file(_table(list(range(100))), path, _info(bloom_filter_columns="id"))
    rg = pq.ParquetFile(path).metadata.row_group(0)
    cols = {rg.column(i).path_in_schema: rg.column(i) for i in range(rg.num_columns)}
    assert cols["id"].to_dict().get("bloom_filter_length", 0) > 0
    assert not cols["v"].to_dict().get("bloom_filter_length")
    con = duckdb.connect()
    probe = con.execute("SELECT bool_and(bloom_filter_excludes) FROM parquet_bloom_probe(?, 'id', 1000)",
                        [str(path)]).fetchone()[0]
    assert probe is True  # DuckDB reads them


keys = st.lists(st.integers(min_value=-1000, max_value=1000), min_size=1, max_size=600)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=keys, probes=st.lists(st.integers(min_value=-1100, max_value=1100), min_size=1, max_size=8),
       sort=st.booleans(), text=st.booleans())
def test_a_bloom_filter_never_hides_a_matching_row(tmp_path, monkeypatch, ids, probes, sort, text):
    monkeypatch.setattr(persist, "ROW_GROUP_ROWS", 64)  # many row groups, each with its own filter
    monkeypatch.setattr(persist, "SORTED_ROW_GROUP_ROWS", 48)
    data = _table(ids)
    if text:
        data = data.set_column(1, "name", pc.cast(data.column("id"), pa.string()))
    path = tmp_path / "f.parquet"
    props = {"bloom_filter_columns": "name" if text else "id"}
    if sort:
        props["sort_key"] = "name" if text else "id"
    write_table_file(data, path, _info(**props))
    con = duckdb.connect()
    con.register("arrow_rows", data)
    col = "name" if text else "id"
    probes = probes + ids[:3]  # some present for sure
    for k in probes:
        lit = f"'{k}'" if text else str(k)
        got = con.execute(f"SELECT count(*), sum(v) FROM read_parquet('{path}') WHERE {col} = {lit}").fetchone()
        want = con.execute(f"SELECT count(*), sum(v) FROM arrow_rows WHERE {col} = {lit}").fetchone()
        assert got == want, (k, got, want)

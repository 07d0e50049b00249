"""Catalog metadata commands of Flight SQL, as data: GetCatalogs, GetDbSchemas, GetTables,
GetTableTypes, the key commands and the names SQL may qualify tables with.

MinIODB has one catalog, ``miniodb``, whose tables live in schema ``main`` (the node may list
more schemas, e.g. read-only ``system`` tables, through ``sql_tables()``). Result schemas are
exactly those of the specification (``arrow::flight::sql::SqlSchema``, arrow-go's
``schema_ref``): clients such as ADBC compare them field by field, nullability included.

Filter patterns use SQL ``LIKE`` semantics: ``%`` any run, ``_`` one character, ``\\``
escapes (``SQL_SEARCH_STRING_ESCAPE``); identifiers match case-insensitively, as DuckDB resolves
them. Table names SQL may qualify with the catalog (``miniodb.main.t``) are resolved by
:func:`flight_server.query.statement.strip_catalog`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from typing import Final

import pyarrow as pa

from ..statements import CATALOG, DEFAULT_SCHEMA

TABLE_TYPE: Final = "TABLE"

_utf8 = pa.utf8()

CATALOGS_SCHEMA: Final = pa.schema([pa.field("catalog_name", _utf8, nullable=False)])
DB_SCHEMAS_SCHEMA: Final = pa.schema([
    pa.field("catalog_name", _utf8), pa.field("db_schema_name", _utf8, nullable=False)])
TABLES_SCHEMA: Final = pa.schema([
    pa.field("catalog_name", _utf8), pa.field("db_schema_name", _utf8),
    pa.field("table_name", _utf8, nullable=False), pa.field("table_type", _utf8, nullable=False)])
TABLES_WITH_SCHEMA_SCHEMA: Final = TABLES_SCHEMA.append(pa.field("table_schema", pa.binary(), nullable=False))
TABLE_TYPES_SCHEMA: Final = pa.schema([pa.field("table_type", _utf8, nullable=False)])
PRIMARY_KEYS_SCHEMA: Final = pa.schema([
    pa.field("catalog_name", _utf8), pa.field("db_schema_name", _utf8),
    pa.field("table_name", _utf8, nullable=False), pa.field("column_name", _utf8, nullable=False),
    pa.field("key_sequence", pa.int32(), nullable=False), pa.field("key_name", _utf8)])
KEYS_SCHEMA: Final = pa.schema([
    pa.field("pk_catalog_name", _utf8), pa.field("pk_db_schema_name", _utf8),
    pa.field("pk_table_name", _utf8, nullable=False), pa.field("pk_column_name", _utf8, nullable=False),
    pa.field("fk_catalog_name", _utf8), pa.field("fk_db_schema_name", _utf8),
    pa.field("fk_table_name", _utf8, nullable=False), pa.field("fk_column_name", _utf8, nullable=False),
    pa.field("key_sequence", pa.int32(), nullable=False), pa.field("fk_key_name", _utf8),
    pa.field("pk_key_name", _utf8), pa.field("update_rule", pa.uint8(), nullable=False),
    pa.field("delete_rule", pa.uint8(), nullable=False)])

#: (db_schema, table name, table type, Arrow schema): one table SQL can read.
SqlTable = tuple[str, str, str, pa.Schema]


@functools.lru_cache(maxsize=512)
def like(pattern: str) -> re.Pattern:
    """A compiled regex for a SQL LIKE pattern (``%``, ``_``, backslash escape)."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def _matches(value: str, pattern: str | None) -> bool:
    return pattern is None or like(pattern).fullmatch(value) is not None


def catalog_matches(catalog: str | None) -> bool:
    """``catalog`` filter of a metadata command (``None``: any; ``""``: objects without one)."""
    return catalog is None or catalog.lower() == CATALOG


def schema_names(tables: Iterable[SqlTable]) -> list[str]:
    names = {DEFAULT_SCHEMA, *(t[0] for t in tables)}
    return sorted(names)


def catalogs_table() -> pa.Table:
    return pa.Table.from_pydict({"catalog_name": [CATALOG]}, schema=CATALOGS_SCHEMA)


def db_schemas_table(tables: Sequence[SqlTable], catalog: str | None, pattern: str | None) -> pa.Table:
    names = [s for s in schema_names(tables) if _matches(s, pattern)] if catalog_matches(catalog) else []
    return pa.Table.from_pydict({"catalog_name": [CATALOG] * len(names), "db_schema_name": names},
                                schema=DB_SCHEMAS_SCHEMA)


def tables_table(tables: Sequence[SqlTable], catalog: str | None, schema_pattern: str | None,
                 name_pattern: str | None, types: Sequence[str], include_schema: bool) -> pa.Table:
    wanted = {t.upper() for t in types}
    rows = sorted(
        (t for t in tables
         if _matches(t[0], schema_pattern) and _matches(t[1], name_pattern) and (not wanted or t[2].upper() in wanted)),
        key=lambda t: (t[0], t[1], t[2]),
    ) if catalog_matches(catalog) else []
    data = {
        "catalog_name": [CATALOG] * len(rows),
        "db_schema_name": [r[0] for r in rows],
        "table_name": [r[1] for r in rows],
        "table_type": [r[2] for r in rows],
    }
    if include_schema:
        data["table_schema"] = [annotate(r[3], r[0], r[1]).serialize().to_pybytes() for r in rows]
        return pa.Table.from_pydict(data, schema=TABLES_WITH_SCHEMA_SCHEMA)
    return pa.Table.from_pydict(data, schema=TABLES_SCHEMA)


def sql_type_name(t: pa.DataType) -> str:
    """The DuckDB name of an Arrow type (what SQL calls the column's type)."""
    simple = {pa.bool_(): "BOOLEAN", pa.int8(): "TINYINT", pa.int16(): "SMALLINT", pa.int32(): "INTEGER",
              pa.int64(): "BIGINT", pa.uint8(): "UTINYINT", pa.uint16(): "USMALLINT", pa.uint32(): "UINTEGER",
              pa.uint64(): "UBIGINT", pa.float16(): "FLOAT", pa.float32(): "FLOAT", pa.float64(): "DOUBLE",
              pa.string(): "VARCHAR", pa.large_string(): "VARCHAR", pa.string_view(): "VARCHAR",
              pa.binary(): "BLOB", pa.large_binary(): "BLOB", pa.date32(): "DATE", pa.date64(): "DATE",
              pa.null(): "NULL"}
    if t in simple:
        return simple[t]
    if pa.types.is_timestamp(t):
        return "TIMESTAMP WITH TIME ZONE" if t.tz else "TIMESTAMP"
    if pa.types.is_time(t):
        return "TIME"
    if pa.types.is_decimal(t):
        return f"DECIMAL({t.precision},{t.scale})"
    if pa.types.is_interval(t) or pa.types.is_duration(t):
        return "INTERVAL"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return sql_type_name(t.value_type) + "[]"
    if pa.types.is_struct(t):
        return "STRUCT(" + ", ".join(f'"{f.name}" {sql_type_name(f.type)}' for f in t) + ")"
    if pa.types.is_map(t):
        return f"MAP({sql_type_name(t.key_type)}, {sql_type_name(t.item_type)})"
    return str(t).upper()


def annotate(schema: pa.Schema, db_schema: str, table: str) -> pa.Schema:
    """``schema`` with Flight SQL column metadata (``ARROW:FLIGHT:SQL:*``) on every field."""
    fields = []
    for f in schema:
        meta = {b"ARROW:FLIGHT:SQL:CATALOG_NAME": CATALOG.encode(),
                b"ARROW:FLIGHT:SQL:DB_SCHEMA_NAME": db_schema.encode(),
                b"ARROW:FLIGHT:SQL:TABLE_NAME": table.encode(),
                b"ARROW:FLIGHT:SQL:TYPE_NAME": sql_type_name(f.type).encode(),
                b"ARROW:FLIGHT:SQL:IS_READ_ONLY": b"0" if db_schema == DEFAULT_SCHEMA else b"1"}
        if pa.types.is_decimal(f.type):
            meta[b"ARROW:FLIGHT:SQL:PRECISION"] = str(f.type.precision).encode()
            meta[b"ARROW:FLIGHT:SQL:SCALE"] = str(f.type.scale).encode()
        fields.append(f.with_metadata({**(f.metadata or {}), **meta}))
    return pa.schema(fields, metadata=schema.metadata)


def table_types_table(tables: Sequence[SqlTable]) -> pa.Table:
    types = sorted({TABLE_TYPE, *(t[2] for t in tables)})
    return pa.Table.from_pydict({"table_type": types}, schema=TABLE_TYPES_SCHEMA)


def primary_keys_table() -> pa.Table:
    """MinIODB tables have no keys: an empty result, not an error."""
    return PRIMARY_KEYS_SCHEMA.empty_table()


def keys_table() -> pa.Table:
    """Exported/imported keys and cross references: none (empty result)."""
    return KEYS_SCHEMA.empty_table()

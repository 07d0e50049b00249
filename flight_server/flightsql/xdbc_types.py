"""Flight SQL ``GetXdbcTypeInfo`` as data: one row per DuckDB type MinIODB exposes.

The schema is exactly that of the specification / the C++ reference implementation
(``arrow::flight::sql::SqlSchema::GetXdbcTypeInfoSchema``).
"""

from __future__ import annotations

from typing import Any, Final

import pyarrow as pa

from clients.proto import FlightSql_pb2 as pb

__all__ = ["XDBC_TYPE_INFO", "XDBC_TYPE_INFO_SCHEMA", "xdbc_type_info_table"]

XDBC_TYPE_INFO_SCHEMA: Final = pa.schema(
    [
        pa.field("type_name", pa.utf8(), nullable=False),
        pa.field("data_type", pa.int32(), nullable=False),
        pa.field("column_size", pa.int32()),
        pa.field("literal_prefix", pa.utf8()),
        pa.field("literal_suffix", pa.utf8()),
        pa.field("create_params", pa.list_(pa.field("item", pa.utf8(), nullable=False))),
        pa.field("nullable", pa.int32(), nullable=False),
        pa.field("case_sensitive", pa.bool_(), nullable=False),
        pa.field("searchable", pa.int32(), nullable=False),
        pa.field("unsigned_attribute", pa.bool_()),
        pa.field("fixed_prec_scale", pa.bool_(), nullable=False),
        pa.field("auto_increment", pa.bool_()),
        pa.field("local_type_name", pa.utf8()),
        pa.field("minimum_scale", pa.int32()),
        pa.field("maximum_scale", pa.int32()),
        pa.field("sql_data_type", pa.int32(), nullable=False),
        pa.field("datetime_subcode", pa.int32()),
        pa.field("num_prec_radix", pa.int32()),
        pa.field("interval_precision", pa.int32()),
    ]
)


_NULLABLE = pb.NULLABILITY_NULLABLE
_SEARCH_BASIC, _SEARCH_FULL = pb.SEARCHABLE_BASIC, pb.SEARCHABLE_FULL


def _type_row(
    type_name: str,
    data_type: int,
    *,
    column_size: int | None = None,
    prefix: str | None = None,
    suffix: str | None = None,
    create_params: list[str] | None = None,
    case_sensitive: bool = False,
    searchable: int = _SEARCH_BASIC,
    unsigned: bool | None = None,
    fixed_prec_scale: bool = False,
    auto_increment: bool | None = None,
    min_scale: int | None = None,
    max_scale: int | None = None,
    sql_data_type: int | None = None,
    subcode: int | None = None,
    radix: int | None = None,
    interval_precision: int | None = None,
) -> dict[str, Any]:
    return {
        "type_name": type_name,
        "data_type": data_type,
        "column_size": column_size,
        "literal_prefix": prefix,
        "literal_suffix": suffix,
        "create_params": create_params,
        "nullable": _NULLABLE,
        "case_sensitive": case_sensitive,
        "searchable": searchable,
        "unsigned_attribute": unsigned,
        "fixed_prec_scale": fixed_prec_scale,
        "auto_increment": auto_increment,
        "local_type_name": None,
        "minimum_scale": min_scale,
        "maximum_scale": max_scale,
        "sql_data_type": data_type if sql_data_type is None else sql_data_type,
        "datetime_subcode": subcode,
        "num_prec_radix": radix,
        "interval_precision": interval_precision,
    }


def _integer(name: str, code: int, digits: int) -> dict[str, Any]:
    return _type_row(
        name, code, column_size=digits, unsigned=False, auto_increment=False,
        min_scale=0, max_scale=0, radix=10,
    )  # fmt: skip


_DATETIME = pb.XDBC_DATETIME
_INT32_MAX = 2**31 - 1

#: One row per DuckDB type MinIODB exposes, ordered by data_type then type_name (as required).
XDBC_TYPE_INFO: Final[list[dict[str, Any]]] = sorted(
    [
        _type_row("BOOLEAN", pb.XDBC_BIT, column_size=1),
        _integer("TINYINT", pb.XDBC_TINYINT, 3),
        _integer("SMALLINT", pb.XDBC_SMALLINT, 5),
        _integer("INTEGER", pb.XDBC_INTEGER, 10),
        _integer("BIGINT", pb.XDBC_BIGINT, 19),
        # DuckDB FLOAT is IEEE single precision (ODBC REAL: 24 binary digits).
        _type_row("FLOAT", pb.XDBC_REAL, column_size=24, unsigned=False, auto_increment=False, radix=2),
        _type_row("DOUBLE", pb.XDBC_DOUBLE, column_size=53, unsigned=False, auto_increment=False, radix=2),
        _type_row(
            "DECIMAL", pb.XDBC_DECIMAL, column_size=38, create_params=["precision", "scale"],
            unsigned=False, auto_increment=False, min_scale=0, max_scale=38, radix=10,
        ),  # fmt: skip
        # VARCHAR has no declared length limit in DuckDB.
        _type_row(
            "VARCHAR", pb.XDBC_VARCHAR, column_size=_INT32_MAX, prefix="'", suffix="'",
            case_sensitive=True, searchable=_SEARCH_FULL,
        ),  # fmt: skip
        _type_row("BLOB", pb.XDBC_VARBINARY, column_size=_INT32_MAX, prefix="'", suffix="'::BLOB"),
        _type_row(
            "DATE", pb.XDBC_DATE, column_size=10, prefix="DATE '", suffix="'",
            sql_data_type=_DATETIME, subcode=pb.XDBC_SUBCODE_DATE,
        ),  # fmt: skip
        _type_row(
            "TIME", pb.XDBC_TIME, column_size=15, prefix="TIME '", suffix="'", min_scale=0,
            max_scale=6, sql_data_type=_DATETIME, subcode=pb.XDBC_SUBCODE_TIME,
        ),  # fmt: skip
        _type_row(
            "TIMESTAMP", pb.XDBC_TIMESTAMP, column_size=26, prefix="TIMESTAMP '", suffix="'",
            min_scale=0, max_scale=6, sql_data_type=_DATETIME, subcode=pb.XDBC_SUBCODE_TIMESTAMP,
        ),  # fmt: skip
        _type_row(
            "TIMESTAMP WITH TIME ZONE", pb.XDBC_TIMESTAMP, column_size=32, prefix="TIMESTAMPTZ '",
            suffix="'", min_scale=0, max_scale=6, sql_data_type=_DATETIME,
            subcode=pb.XDBC_SUBCODE_TIMESTAMP_WITH_TIMEZONE,
        ),  # fmt: skip
        # DuckDB's INTERVAL (months, days, microseconds) spans YEAR TO SECOND, which has no
        # ODBC subcode: report it as an interval of unknown subtype.
        _type_row(
            "INTERVAL", pb.XDBC_INTERVAL, prefix="INTERVAL '", suffix="'",
            sql_data_type=pb.XDBC_INTERVAL, subcode=pb.XDBC_SUBCODE_UNKNOWN,
        ),  # fmt: skip
    ],
    key=lambda row: (row["data_type"], row["type_name"]),
)


def xdbc_type_info_table(data_type: int | None = None) -> pa.Table:
    """The ``GetXdbcTypeInfo`` result: every type, or only those whose ``data_type`` matches."""
    rows = [r for r in XDBC_TYPE_INFO if data_type is None or r["data_type"] == data_type]
    return pa.Table.from_pylist(rows, schema=XDBC_TYPE_INFO_SCHEMA)

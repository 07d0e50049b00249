"""Flight SQL server metadata as data: the ``GetSqlInfo`` answer (``GetXdbcTypeInfo``'s is in
:mod:`.xdbc_types`).

``SQL_INFO`` maps every ``SqlInfo`` id MinIODB answers to its value. The dense-union member a
value is encoded as is decided by its Python type:

===================  =====================  ====
Python value         union member           code
===================  =====================  ====
``str``              ``string_value``       0
``bool``             ``bool_value``         1
``int``              ``bigint_value``       2
``Int32(...)``       ``int32_bitmask``      3
``list[str]``        ``string_list``        4
``dict[int, list]``  ``int32_to_int32_...``  5
===================  =====================  ====

A plain ``int`` under an id that the specification defines as int32 (bitmasks, enum ordinals,
timeouts: ``INT32_IDS``) is encoded as ``int32_bitmask`` too, so callers cannot get the member
wrong; ``Int32`` is the explicit tag for custom (>= 10000) ids.

The schema is exactly that of the specification / the C++ reference implementation
(``arrow::flight::sql::SqlSchema``): union children are non-nullable, list items are named
``item``, the map is ``map<int32, list<int32>>`` with pyarrow's standard ``entries`` struct.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable, Mapping
from typing import Any, Final

import pyarrow as pa

from clients.proto import FlightSql_pb2 as pb

__all__ = [
    "INT32_IDS",
    "Int32",
    "SQL_INFO",
    "SQL_INFO_SCHEMA",
    "SQL_INFO_VALUE_TYPE",
    "sql_info_table",
]


class Int32(int):
    """Tag an integer as the ``int32_bitmask`` union member (type code 3)."""

    __slots__ = ()


# --------------------------------------------------------------------------------------------
# Schemas
# --------------------------------------------------------------------------------------------

STRING_VALUE: Final = 0
BOOL_VALUE: Final = 1
BIGINT_VALUE: Final = 2
INT32_BITMASK: Final = 3
STRING_LIST: Final = 4
INT32_TO_INT32_LIST_MAP: Final = 5

_UNION_FIELDS: Final = (
    pa.field("string_value", pa.utf8(), nullable=False),
    pa.field("bool_value", pa.bool_(), nullable=False),
    pa.field("bigint_value", pa.int64(), nullable=False),
    pa.field("int32_bitmask", pa.int32(), nullable=False),
    pa.field("string_list", pa.list_(pa.utf8()), nullable=False),
    pa.field("int32_to_int32_list_map", pa.map_(pa.int32(), pa.list_(pa.int32())), nullable=False),
)
_TYPE_CODES: Final = (
    STRING_VALUE,
    BOOL_VALUE,
    BIGINT_VALUE,
    INT32_BITMASK,
    STRING_LIST,
    INT32_TO_INT32_LIST_MAP,
)

SQL_INFO_VALUE_TYPE: Final = pa.dense_union(list(_UNION_FIELDS), type_codes=list(_TYPE_CODES))
SQL_INFO_SCHEMA: Final = pa.schema(
    [
        pa.field("info_name", pa.uint32(), nullable=False),
        pa.field("value", SQL_INFO_VALUE_TYPE, nullable=False),
    ]
)

# --------------------------------------------------------------------------------------------
# SqlInfo values
# --------------------------------------------------------------------------------------------

#: Ids whose value the specification defines as int32 (enum ordinals, bitmasks, timeouts).
INT32_IDS: Final = frozenset(
    {
        pb.FLIGHT_SQL_SERVER_TRANSACTION,
        pb.FLIGHT_SQL_SERVER_STATEMENT_TIMEOUT,
        pb.FLIGHT_SQL_SERVER_TRANSACTION_TIMEOUT,
        pb.SQL_IDENTIFIER_CASE,
        pb.SQL_QUOTED_IDENTIFIER_CASE,
        pb.SQL_NULL_ORDERING,
        pb.SQL_SUPPORTED_GROUP_BY,
        pb.SQL_SUPPORTED_GRAMMAR,
        pb.SQL_ANSI92_SUPPORTED_LEVEL,
        pb.SQL_OUTER_JOINS_SUPPORT_LEVEL,
        pb.SQL_SCHEMAS_SUPPORTED_ACTIONS,
        pb.SQL_CATALOGS_SUPPORTED_ACTIONS,
        pb.SQL_SUPPORTED_POSITIONED_COMMANDS,
        pb.SQL_SUPPORTED_SUBQUERIES,
        pb.SQL_SUPPORTED_UNIONS,
        pb.SQL_DEFAULT_TRANSACTION_ISOLATION,
        pb.SQL_SUPPORTED_TRANSACTIONS_ISOLATION_LEVELS,
        pb.SQL_SUPPORTED_RESULT_SET_TYPES,
        pb.SQL_SUPPORTED_CONCURRENCIES_FOR_RESULT_SET_UNSPECIFIED,
        pb.SQL_SUPPORTED_CONCURRENCIES_FOR_RESULT_SET_FORWARD_ONLY,
        pb.SQL_SUPPORTED_CONCURRENCIES_FOR_RESULT_SET_SCROLL_SENSITIVE,
        pb.SQL_SUPPORTED_CONCURRENCIES_FOR_RESULT_SET_SCROLL_INSENSITIVE,
    }
)


def _server_version() -> str:
    try:
        return importlib.metadata.version("miniodb")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def _bits(*positions: int) -> Int32:
    """An int32 bitmask with the given enum ordinals set."""
    mask = 0
    for p in positions:
        mask |= 1 << p
    return Int32(mask)


# DuckDB's reserved keywords (duckdb_keywords() WHERE keyword_category = 'reserved').
_KEYWORDS: Final = [
    "ALL", "ANALYSE", "ANALYZE", "AND", "ANY", "ARRAY", "AS", "ASC", "ASYMMETRIC", "BOTH",
    "CASE", "CAST", "CHECK", "COLLATE", "COLUMN", "CONSTRAINT", "CREATE", "DEFAULT",
    "DEFERRABLE", "DESC", "DESCRIBE", "DISTINCT", "DO", "ELSE", "END", "EXCEPT", "FALSE",
    "FETCH", "FOR", "FOREIGN", "FROM", "GROUP", "HAVING", "IN", "INITIALLY", "INTERSECT",
    "INTO", "LAMBDA", "LATERAL", "LEADING", "LIMIT", "NOT", "NULL", "OFFSET", "ON", "ONLY",
    "OR", "ORDER", "PIVOT", "PIVOT_LONGER", "PIVOT_WIDER", "PLACING", "PRIMARY", "QUALIFY",
    "REFERENCES", "RETURNING", "SELECT", "SHOW", "SOME", "SUMMARIZE", "SYMMETRIC", "TABLE",
    "THEN", "TO", "TRAILING", "TRUE", "UNION", "UNIQUE", "UNPIVOT", "USING", "VARIADIC",
    "WHEN", "WHERE", "WINDOW", "WITH",
]  # fmt: skip

# Scalar functions of DuckDB (all present in duckdb_functions() or, for the few SQL special
# forms such as EXTRACT or CURRENT_TIMESTAMP, accepted by its parser).
_NUMERIC_FUNCTIONS: Final = [
    "ABS", "ACOS", "ACOSH", "ASIN", "ASINH", "ATAN", "ATAN2", "ATANH", "BIT_COUNT", "CBRT",
    "CEIL", "CEILING", "COS", "COSH", "COT", "DEGREES", "EVEN", "EXP", "FACTORIAL", "FLOOR",
    "FMOD", "GAMMA", "GCD", "GREATEST", "ISFINITE", "ISINF", "ISNAN", "LCM", "LEAST", "LGAMMA",
    "LN", "LOG", "LOG10", "LOG2", "MOD", "NEXTAFTER", "PI", "POW", "POWER", "RADIANS",
    "RANDOM", "ROUND", "ROUND_EVEN", "SETSEED", "SIGN", "SIGNBIT", "SIN", "SINH", "SQRT",
    "TAN", "TANH", "TRUNC", "XOR",
]  # fmt: skip
_STRING_FUNCTIONS: Final = [
    "ASCII", "BASE64", "BIT_LENGTH", "CHAR_LENGTH", "CHARACTER_LENGTH", "CHR", "CONCAT",
    "CONCAT_WS", "CONTAINS", "ENDS_WITH", "FORMAT", "FROM_BASE64", "HASH", "INSTR",
    "JARO_WINKLER_SIMILARITY", "LCASE", "LEFT", "LENGTH", "LEVENSHTEIN", "LOWER", "LPAD",
    "LTRIM", "MD5", "OCTET_LENGTH", "ORD", "POSITION", "PRINTF", "REGEXP_EXTRACT",
    "REGEXP_MATCHES", "REGEXP_REPLACE", "REPEAT", "REPLACE", "REVERSE", "RIGHT", "RPAD",
    "RTRIM", "SHA1", "SHA256", "SPLIT_PART", "STARTS_WITH", "STRING_SPLIT", "STRIP_ACCENTS",
    "STRLEN", "STRPOS", "SUBSTR", "SUBSTRING", "TO_BASE64", "TRANSLATE", "TRIM", "UCASE",
    "UNICODE", "UPPER", "URL_DECODE", "URL_ENCODE",
]  # fmt: skip
_SYSTEM_FUNCTIONS: Final = [
    "COALESCE", "CURRENT_DATABASE", "CURRENT_QUERY", "CURRENT_SCHEMA", "CURRENT_SCHEMAS",
    "CURRENT_SETTING", "CURRENT_USER", "GEN_RANDOM_UUID", "IFNULL", "NULLIF", "TYPEOF",
    "UUID", "VERSION",
]  # fmt: skip
_DATETIME_FUNCTIONS: Final = [
    "AGE", "CENTURY", "CURRENT_DATE", "CURRENT_TIME", "CURRENT_TIMESTAMP", "DATE_ADD",
    "DATE_DIFF", "DATE_PART", "DATE_SUB", "DATE_TRUNC", "DATEDIFF", "DATEPART", "DAY",
    "DAYNAME", "DAYOFMONTH", "DAYOFWEEK", "DAYOFYEAR", "DECADE", "EPOCH", "EPOCH_MS",
    "EPOCH_NS", "EPOCH_US", "EXTRACT", "HOUR", "ISODOW", "ISOYEAR", "LAST_DAY",
    "LOCALTIME", "LOCALTIMESTAMP", "MAKE_DATE", "MAKE_TIME", "MAKE_TIMESTAMP",
    "MICROSECOND", "MILLENNIUM", "MILLISECOND", "MINUTE", "MONTH", "MONTHNAME", "NOW",
    "QUARTER", "SECOND", "STRFTIME", "STRPTIME", "TIME_BUCKET", "TO_TIMESTAMP", "TODAY",
    "TRY_STRPTIME", "WEEK", "WEEKDAY", "WEEKOFYEAR", "YEAR", "YEARWEEK",
]  # fmt: skip


def _supported_conversions() -> dict[int, list[int]]:
    """``SQL_SUPPORTS_CONVERT``: which CAST(from AS to) DuckDB performs (SqlSupportsConvert)."""
    c = pb
    numeric = [
        c.SQL_CONVERT_BIGINT, c.SQL_CONVERT_BIT, c.SQL_CONVERT_DECIMAL, c.SQL_CONVERT_FLOAT,
        c.SQL_CONVERT_INTEGER, c.SQL_CONVERT_NUMERIC, c.SQL_CONVERT_REAL, c.SQL_CONVERT_SMALLINT,
        c.SQL_CONVERT_TINYINT,
    ]  # fmt: skip
    text = [c.SQL_CONVERT_CHAR, c.SQL_CONVERT_VARCHAR, c.SQL_CONVERT_LONGVARCHAR]
    binary = [c.SQL_CONVERT_BINARY, c.SQL_CONVERT_VARBINARY, c.SQL_CONVERT_LONGVARBINARY]
    intervals = [c.SQL_CONVERT_INTERVAL_DAY_TIME, c.SQL_CONVERT_INTERVAL_YEAR_MONTH]
    temporal = [c.SQL_CONVERT_DATE, c.SQL_CONVERT_TIME, c.SQL_CONVERT_TIMESTAMP]
    conversions: dict[int, list[int]] = {}
    for t in numeric:
        conversions[t] = numeric + text
    for t in text:
        conversions[t] = numeric + text + binary + temporal + intervals
    for t in binary:
        conversions[t] = text + binary
    conversions[c.SQL_CONVERT_DATE] = [c.SQL_CONVERT_DATE, c.SQL_CONVERT_TIMESTAMP, *text]
    conversions[c.SQL_CONVERT_TIME] = [c.SQL_CONVERT_TIME, *text]
    conversions[c.SQL_CONVERT_TIMESTAMP] = temporal + text
    for t in intervals:
        conversions[t] = intervals + text
    return {k: sorted(set(v)) for k, v in sorted(conversions.items())}


# MinIODB table names: flight_server.paths.TABLE_NAME (letter + up to 63 [A-Za-z0-9_]).
MAX_TABLE_NAME_LENGTH: Final = 64

#: What MinIODB reports for each SqlInfo id. Ids that do not apply (Substrait versions) are
#: absent rather than null: the union members are non-nullable.
SQL_INFO: Final[dict[int, Any]] = {
    # --- server ---
    pb.FLIGHT_SQL_SERVER_NAME: "MinIODB",
    pb.FLIGHT_SQL_SERVER_VERSION: _server_version(),
    pb.FLIGHT_SQL_SERVER_ARROW_VERSION: pa.__version__,
    pb.FLIGHT_SQL_SERVER_READ_ONLY: False,
    pb.FLIGHT_SQL_SERVER_SQL: True,
    pb.FLIGHT_SQL_SERVER_SUBSTRAIT: False,
    pb.FLIGHT_SQL_SERVER_TRANSACTION: Int32(pb.SQL_SUPPORTED_TRANSACTION_NONE),
    pb.FLIGHT_SQL_SERVER_CANCEL: True,
    pb.FLIGHT_SQL_SERVER_BULK_INGESTION: True,
    pb.FLIGHT_SQL_SERVER_INGEST_TRANSACTIONS_SUPPORTED: False,
    pb.FLIGHT_SQL_SERVER_STATEMENT_TIMEOUT: Int32(0),
    pb.FLIGHT_SQL_SERVER_TRANSACTION_TIMEOUT: Int32(0),
    # --- SQL syntax ---
    pb.SQL_DDL_CATALOG: False,
    pb.SQL_DDL_SCHEMA: False,
    pb.SQL_DDL_TABLE: True,
    # DuckDB resolves identifiers case-insensitively, quoted or not (and preserves the case).
    pb.SQL_IDENTIFIER_CASE: Int32(pb.SQL_CASE_SENSITIVITY_CASE_INSENSITIVE),
    pb.SQL_IDENTIFIER_QUOTE_CHAR: '"',
    pb.SQL_QUOTED_IDENTIFIER_CASE: Int32(pb.SQL_CASE_SENSITIVITY_CASE_INSENSITIVE),
    pb.SQL_ALL_TABLES_ARE_SELECTABLE: True,
    # DuckDB's default_null_order is NULLS LAST for both ASC and DESC.
    pb.SQL_NULL_ORDERING: Int32(pb.SQL_NULLS_SORTED_AT_END),
    pb.SQL_KEYWORDS: _KEYWORDS,
    pb.SQL_NUMERIC_FUNCTIONS: _NUMERIC_FUNCTIONS,
    pb.SQL_STRING_FUNCTIONS: _STRING_FUNCTIONS,
    pb.SQL_SYSTEM_FUNCTIONS: _SYSTEM_FUNCTIONS,
    pb.SQL_DATETIME_FUNCTIONS: _DATETIME_FUNCTIONS,
    pb.SQL_SEARCH_STRING_ESCAPE: "\\",
    pb.SQL_EXTRA_NAME_CHARACTERS: "$",
    pb.SQL_SUPPORTS_COLUMN_ALIASING: True,
    pb.SQL_NULL_PLUS_NULL_IS_NULL: True,
    pb.SQL_SUPPORTS_CONVERT: _supported_conversions(),
    pb.SQL_SUPPORTS_TABLE_CORRELATION_NAMES: True,
    pb.SQL_SUPPORTS_DIFFERENT_TABLE_CORRELATION_NAMES: False,
    pb.SQL_SUPPORTS_EXPRESSIONS_IN_ORDER_BY: True,
    pb.SQL_SUPPORTS_ORDER_BY_UNRELATED: True,
    pb.SQL_SUPPORTED_GROUP_BY: _bits(pb.SQL_GROUP_BY_UNRELATED, pb.SQL_GROUP_BY_BEYOND_SELECT),
    pb.SQL_SUPPORTS_LIKE_ESCAPE_CLAUSE: True,
    pb.SQL_SUPPORTS_NON_NULLABLE_COLUMNS: True,
    pb.SQL_SUPPORTED_GRAMMAR: _bits(pb.SQL_MINIMUM_GRAMMAR, pb.SQL_CORE_GRAMMAR),
    pb.SQL_ANSI92_SUPPORTED_LEVEL: _bits(pb.ANSI92_ENTRY_SQL, pb.ANSI92_INTERMEDIATE_SQL),
    # Constraints are not enforced on data stored as Parquet in object storage.
    pb.SQL_SUPPORTS_INTEGRITY_ENHANCEMENT_FACILITY: False,
    pb.SQL_OUTER_JOINS_SUPPORT_LEVEL: Int32(pb.SQL_FULL_OUTER_JOINS),
    pb.SQL_SCHEMA_TERM: "schema",
    pb.SQL_PROCEDURE_TERM: "",
    pb.SQL_CATALOG_TERM: "catalog",
    pb.SQL_CATALOG_AT_START: True,
    pb.SQL_SCHEMAS_SUPPORTED_ACTIONS: Int32(0),
    pb.SQL_CATALOGS_SUPPORTED_ACTIONS: Int32(0),
    pb.SQL_SUPPORTED_POSITIONED_COMMANDS: Int32(0),
    pb.SQL_SELECT_FOR_UPDATE_SUPPORTED: False,
    pb.SQL_STORED_PROCEDURES_SUPPORTED: False,
    pb.SQL_SUPPORTED_SUBQUERIES: _bits(
        pb.SQL_SUBQUERIES_IN_COMPARISONS,
        pb.SQL_SUBQUERIES_IN_EXISTS,
        pb.SQL_SUBQUERIES_IN_INS,
        pb.SQL_SUBQUERIES_IN_QUANTIFIEDS,
    ),
    pb.SQL_CORRELATED_SUBQUERIES_SUPPORTED: True,
    pb.SQL_SUPPORTED_UNIONS: _bits(pb.SQL_UNION, pb.SQL_UNION_ALL),
    # int64 limits; 0 means "no limit / not known" (DuckDB has no fixed identifier, literal or
    # statement limits).
    pb.SQL_MAX_BINARY_LITERAL_LENGTH: 0,
    pb.SQL_MAX_CHAR_LITERAL_LENGTH: 0,
    pb.SQL_MAX_COLUMN_NAME_LENGTH: 0,
    pb.SQL_MAX_COLUMNS_IN_GROUP_BY: 0,
    pb.SQL_MAX_COLUMNS_IN_INDEX: 0,
    pb.SQL_MAX_COLUMNS_IN_ORDER_BY: 0,
    pb.SQL_MAX_COLUMNS_IN_SELECT: 0,
    pb.SQL_MAX_COLUMNS_IN_TABLE: 0,
    pb.SQL_MAX_CONNECTIONS: 0,
    pb.SQL_MAX_CURSOR_NAME_LENGTH: 0,
    pb.SQL_MAX_INDEX_LENGTH: 0,
    pb.SQL_DB_SCHEMA_NAME_LENGTH: 0,
    pb.SQL_MAX_PROCEDURE_NAME_LENGTH: 0,
    pb.SQL_MAX_CATALOG_NAME_LENGTH: 0,
    pb.SQL_MAX_ROW_SIZE: 0,
    pb.SQL_MAX_ROW_SIZE_INCLUDES_BLOBS: False,
    pb.SQL_MAX_STATEMENT_LENGTH: 0,
    pb.SQL_MAX_STATEMENTS: 0,
    pb.SQL_MAX_TABLE_NAME_LENGTH: MAX_TABLE_NAME_LENGTH,
    pb.SQL_MAX_TABLES_IN_SELECT: 0,
    pb.SQL_MAX_USERNAME_LENGTH: 0,
    # Every statement auto-commits; there are no client-visible transactions.
    pb.SQL_DEFAULT_TRANSACTION_ISOLATION: Int32(pb.SQL_TRANSACTION_NONE),
    pb.SQL_TRANSACTIONS_SUPPORTED: False,
    pb.SQL_SUPPORTED_TRANSACTIONS_ISOLATION_LEVELS: Int32(0),
    pb.SQL_DATA_DEFINITION_CAUSES_TRANSACTION_COMMIT: False,
    pb.SQL_DATA_DEFINITIONS_IN_TRANSACTIONS_IGNORED: False,
    pb.SQL_SUPPORTED_RESULT_SET_TYPES: _bits(pb.SQL_RESULT_SET_TYPE_FORWARD_ONLY),
    pb.SQL_SUPPORTED_CONCURRENCIES_FOR_RESULT_SET_UNSPECIFIED: Int32(0),
    pb.SQL_SUPPORTED_CONCURRENCIES_FOR_RESULT_SET_FORWARD_ONLY: _bits(
        pb.SQL_RESULT_SET_CONCURRENCY_READ_ONLY
    ),
    pb.SQL_SUPPORTED_CONCURRENCIES_FOR_RESULT_SET_SCROLL_SENSITIVE: Int32(0),
    pb.SQL_SUPPORTED_CONCURRENCIES_FOR_RESULT_SET_SCROLL_INSENSITIVE: Int32(0),
    pb.SQL_BATCH_UPDATES_SUPPORTED: True,
    pb.SQL_SAVEPOINTS_SUPPORTED: False,
    pb.SQL_NAMED_PARAMETERS_SUPPORTED: False,
    pb.SQL_LOCATORS_UPDATE_COPY: False,
    pb.SQL_STORED_FUNCTIONS_USING_CALL_SYNTAX_SUPPORTED: False,
}


def _member(info_id: int, value: Any) -> int:
    """The union type code a value is encoded as."""
    if isinstance(value, bool):
        return BOOL_VALUE
    if isinstance(value, Int32):
        return INT32_BITMASK
    if isinstance(value, int):
        return INT32_BITMASK if info_id in INT32_IDS else BIGINT_VALUE
    if isinstance(value, str):
        return STRING_VALUE
    if isinstance(value, Mapping):
        return INT32_TO_INT32_LIST_MAP
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return STRING_LIST
    raise TypeError(f"SqlInfo {info_id}: cannot encode {type(value).__name__} value {value!r}")


def _select_ids(ids: Iterable[int] | None, info: Mapping[int, Any]) -> list[int]:
    if not ids:
        return sorted(info)
    seen: set[int] = set()
    out: list[int] = []
    for i in ids:
        i = int(i)
        if i in info and i not in seen:
            seen.add(i)
            out.append(i)
    return out


def sql_info_table(ids: Iterable[int] | None = None, info: Mapping[int, Any] | None = None) -> pa.Table:
    """The ``GetSqlInfo`` result for ``ids`` (``None`` or empty: every known id, ascending).

    Rows follow the order of ``ids``; unknown ids are omitted, duplicates answered once.
    ``info`` replaces :data:`SQL_INFO` (e.g. a node overriding read-only mode).
    """
    info = SQL_INFO if info is None else info
    selected = _select_ids(ids, info)

    buckets: list[list[Any]] = [[] for _ in _TYPE_CODES]
    type_ids: list[int] = []
    offsets: list[int] = []
    for info_id in selected:
        value = info[info_id]
        code = _member(info_id, value)
        if code == INT32_TO_INT32_LIST_MAP:
            value = [(int(k), [int(x) for x in v]) for k, v in value.items()]
        elif code == STRING_LIST:
            value = list(value)
        type_ids.append(code)
        offsets.append(len(buckets[code]))
        buckets[code].append(value)

    children = [pa.array(bucket, type=f.type) for bucket, f in zip(buckets, _UNION_FIELDS, strict=True)]
    union = pa.UnionArray.from_dense(
        pa.array(type_ids, type=pa.int8()),
        pa.array(offsets, type=pa.int32()),
        children,
        [f.name for f in _UNION_FIELDS],
        list(_TYPE_CODES),
    )
    # from_dense declares nullable children; the spec's union has non-nullable ones. Same layout.
    union = union.view(SQL_INFO_VALUE_TYPE)
    names = pa.array(selected, type=pa.uint32())
    return pa.Table.from_arrays([names, union], schema=SQL_INFO_SCHEMA)

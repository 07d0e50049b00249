"""What a SQL statement is, from DuckDB's own parser: its kind, and the kinds user SQL may not run.

A neutral low module: the read path (query engine, Flight SQL handlers) and the write path
(``dml.py``) both classify statements here, so neither imports the other for it.
"""

from __future__ import annotations

from typing import Final

import duckdb

from clients.errors import InvalidRequest

#: The one catalog and the default schema of every MinIODB table (Flight SQL metadata, DDL targets).
CATALOG: Final = "miniodb"
DEFAULT_SCHEMA: Final = "main"

# DuckDB statement types that never reach the engine from user SQL, with the reason given.
REFUSED = {
    "COPY": "COPY is not allowed: the node does not read or write files for clients; "
            "stream the result (miniodb sql --format csv|parquet --output FILE)",
    "EXPORT": "EXPORT DATABASE is not allowed: the node does not write files for clients",
    "ATTACH": "ATTACH is not allowed: queries read only MinIODB tables",
    "DETACH": "DETACH is not allowed",
    "SET": "SET is not allowed: engine settings are fixed by the server configuration",
    "VARIABLE_SET": "SET VARIABLE is not allowed",
    "LOAD": "INSTALL/LOAD is not allowed: extensions cannot be installed or loaded",
    "EXTENSION": "extensions cannot be installed or loaded",
    "PRAGMA": "PRAGMA is not allowed: engine settings are fixed by the server configuration",
    "TRANSACTION": "transactions are not supported: each statement is atomic on its own",
    "VACUUM": "VACUUM is not allowed",
    "CALL": "CALL is not allowed",
    "ALTER": "ALTER is not supported; tables evolve on ingest (new nullable columns, int->float)",
    "PREPARE": "PREPARE is not supported in SQL text; use Flight SQL prepared statements",
    "EXECUTE": "EXECUTE is not supported in SQL text; use Flight SQL prepared statements",
}
QUERY_KINDS = frozenset({"SELECT", "EXPLAIN"})
#: Statements that change data: they run as updates and return no rows (dml.py, rewrite.py).
WRITE_KINDS = frozenset({"CREATE", "DROP", "INSERT", "DELETE", "UPDATE"})


def classify(sql: str) -> tuple[str, duckdb.Statement]:
    """Statement kind from DuckDB's parser; exactly one statement is accepted. The read path
    keeps one analysis per text (query/statement.py); DDL/DML is rare enough to parse each time."""
    if not sql or not sql.strip():
        raise InvalidRequest("empty SQL statement")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise InvalidRequest(str(exc).strip()) from exc
    if len(statements) != 1:
        raise InvalidRequest(f"expected exactly one SQL statement, got {len(statements)}")
    st = statements[0]
    return st.type.name, st


def refuse(kind: str) -> None:
    """Raise the client error for a statement kind that is not a query."""
    if kind in REFUSED:
        raise InvalidRequest(REFUSED[kind])
    if kind in WRITE_KINDS:
        raise InvalidRequest(f"{kind} changes data; execute it as an update, not as a query")
    if kind not in QUERY_KINDS:
        raise InvalidRequest(f"{kind} statements are not supported here")

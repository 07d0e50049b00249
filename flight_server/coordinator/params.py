"""Bind ``?`` parameters into a SELECT as typed SQL literals, so the planner sees one plain
statement and every peer runs the same values.

Each value gets the type DuckDB itself gives the bound parameter (``typeof(?)``) and is
written as ``CAST('<DuckDB's text of it>' AS <type>)``, which reads back to the same value.
Positional ``?`` only, found by the SQL tokenizer (never inside a string literal); a statement
with ``$n`` parameters, a dict of values or a value of a nested type stays unbound (None) and
runs locally, as on one node.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import sqlglot
from sqlglot.dialects.duckdb import DuckDB
from sqlglot.tokens import TokenType

_SCALAR = ("BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
           "UBIGINT", "FLOAT", "DOUBLE", "DECIMAL", "VARCHAR", "DATE", "TIME", "TIMESTAMP", "BLOB", "INTERVAL",
           "UUID")


def _literal(cur: duckdb.DuckDBPyConnection, value: Any) -> str | None:
    if value is None:
        return "NULL"
    type_name, text = cur.execute("SELECT typeof(?), CAST(? AS VARCHAR)", [value, value]).fetchall()[0]
    if not type_name.upper().startswith(_SCALAR) or "[" in type_name or text is None:
        return None
    return "CAST('" + text.replace("'", "''") + "' AS " + type_name + ")"


def bind_literals(sql: str, params: Any, cur: duckdb.DuckDBPyConnection) -> str | None:
    """``sql`` with each ``?`` replaced by its value as a typed literal, or None (keep it local)."""
    if not isinstance(params, list | tuple):
        return None
    try:
        tokens = DuckDB().tokenize(sql)
    except sqlglot.errors.SqlglotError:
        return None
    if any(t.token_type == TokenType.PARAMETER for t in tokens):
        return None
    places = [t for t in tokens if t.token_type == TokenType.PLACEHOLDER and t.text == "?"]
    if len(places) != len(params):
        return None
    out, last = [], 0
    for token, value in zip(places, _values(params), strict=True):
        lit = _literal(cur, value)
        if lit is None:
            return None
        out += [sql[last:token.start], lit]
        last = token.end + 1
    out.append(sql[last:])
    return "".join(out)


def _values(params: Sequence[Any]) -> list[Any]:
    return list(params)

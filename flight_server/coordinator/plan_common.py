"""Shared AST helpers of the distributed planner (aggregate and volatility detection, quoting)."""

from __future__ import annotations

import threading

from sqlglot import exp

DIALECT = "duckdb"


class Unsupported(Exception):
    """The statement does not fit a shape; the planner tries the next, more general one."""


# Functions whose value differs between peers or between calls: never evaluated on a peer.
VOLATILE = frozenset(
    {
        "random", "rand", "uuid", "gen_random_uuid", "uuidv4", "uuidv7", "nextval", "currval",
        "setseed", "now", "current_timestamp", "current_date", "current_time", "get_current_time",
        "get_current_timestamp", "transaction_timestamp", "localtimestamp", "localtime", "today",
        "current_localtimestamp", "current_localtime",
    }
)
_VOLATILE_CLASSES = (
    exp.Rand, exp.Uuid, exp.CurrentTimestamp, exp.CurrentDate, exp.CurrentTime, exp.Placeholder,
)

_aggregate_names: frozenset[str] | None = None
_names_lock = threading.Lock()


def duckdb_aggregate_names() -> frozenset[str]:
    """Names DuckDB knows as aggregate functions (sqlglot parses unknown ones as Anonymous)."""
    global _aggregate_names
    with _names_lock:
        if _aggregate_names is None:
            import duckdb

            con = duckdb.connect(":memory:")
            try:
                rows = con.execute(
                    "SELECT DISTINCT lower(function_name) FROM duckdb_functions() "
                    "WHERE function_type = 'aggregate'"
                ).fetchall()
            finally:
                con.close()
            _aggregate_names = frozenset(r[0] for r in rows)
        return _aggregate_names


def function_name(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.this).lower()
    return node.sql_name().lower() if isinstance(node, exp.Func) else ""


def is_aggregate(node: exp.Expression) -> bool:
    """True for an aggregate function call (known to sqlglot or to DuckDB)."""
    if isinstance(node, exp.AggFunc):
        return True
    if isinstance(node, exp.Anonymous):
        return function_name(node) in duckdb_aggregate_names()
    return False


def has_aggregate(tree: exp.Expression) -> bool:
    return any(is_aggregate(node) for node in tree.walk())


def is_volatile(tree: exp.Expression) -> bool:
    for node in tree.walk():
        if isinstance(node, _VOLATILE_CLASSES):
            return True
        if isinstance(node, exp.Func) and function_name(node) in VOLATILE:
            return True
        if isinstance(node, exp.Column) and node.name.lower() in VOLATILE and not node.table:
            return True  # current_date / current_timestamp written without parentheses
    return False


def has_subquery(tree: exp.Expression) -> bool:
    return any(True for _ in tree.find_all(exp.Select, exp.Subquery, exp.Query))


def quoted_column(name: str) -> exp.Column:
    return exp.Column(this=exp.to_identifier(name, quoted=True))


def conjuncts(condition: exp.Expression | None) -> list[exp.Expression]:
    if condition is None:
        return []
    if isinstance(condition, exp.Paren):
        return conjuncts(condition.this)
    if isinstance(condition, exp.And):
        return conjuncts(condition.this) + conjuncts(condition.expression)
    return [condition]


def int_literal(node: exp.Expression | None) -> int | None:
    """The integer value of a plain non-negative integer literal, else None."""
    if isinstance(node, exp.Literal) and not node.is_string:
        try:
            value = int(node.this)
        except ValueError:
            return None
        return value if value >= 0 else None
    return None

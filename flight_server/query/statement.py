"""One analysis per client statement, computed once and handed down the read path.

:func:`statement` turns the SQL text a client sent into a :class:`Statement`: the text with
the ``miniodb`` catalog removed from table names (so the names clients build from GetTables
resolve), its kind from DuckDB's parser (exactly one statement is accepted), its parameter
count and, for a SELECT, what it reads (base tables and their literal range constraints,
:mod:`.analyze`), a digest of its normalised parse tree and whether its result may be cached.
The Flight SQL handlers, the query runner (result cache key, schema cache) and the engine
(table binding, file pruning) all read this one object; it is kept in one bounded LRU by text.

DuckDB parses each new text at most twice (``extract_statements`` for the kind,
``json_serialize_sql`` for a SELECT's tree), sqlglot a third time only when the text names
the ``miniodb`` catalog; a SELECT that differs from an earlier one only in its literals takes
the tree of their common template instead (:mod:`.template`: no DuckDB parse at all). Parsing
is a pure function of the text, so a private in-memory DuckDB (no data, no file access) does
it, whatever node or request asks.

The digest: DuckDB's ``json_serialize_sql`` tree (positions removed: whitespace and keyword
case do not matter, literals and aliases do). A statement is *cacheable* unless it calls a
function whose value changes between calls (``random()``, ``now()``, ``current_date``, ...),
samples, reads a table outside schema ``main`` (``system.*``) or reads a table at a version
(``t AT (VERSION => 12)``: rewritten to a view of that version's files, :mod:`.analyze`).
"""

from __future__ import annotations

import functools
import hashlib
import threading
from dataclasses import dataclass
from typing import Any, Final

import duckdb
import orjson
import sqlglot
from sqlglot import exp

from clients.errors import InvalidRequest

from ..statements import CATALOG, QUERY_KINDS, REFUSED, WRITE_KINDS, classify, refuse
from .analyze import Analysis, analyze
from .plain_scan import PlainScan, plain_scan
from .template import POSITIONS, Templates

__all__ = ["CATALOG", "QUERY_KINDS", "REFUSED", "WRITE_KINDS", "Statement", "classify", "refuse", "statement"]

CACHE_SIZE: Final = 4096  # statements remembered by text

# Functions whose value changes between calls: a statement using one is never cached.
VOLATILE_FUNCTIONS = frozenset({
    "random", "rand", "setseed", "gen_random_uuid", "uuid", "uuidv4", "uuidv7", "now", "get_current_time",
    "get_current_timestamp", "current_timestamp", "transaction_timestamp", "statement_timestamp",
    "current_date", "current_time", "today", "localtime", "localtimestamp", "current_localtime",
    "current_localtimestamp", "nextval", "currval", "current_query", "current_setting",
    "get_current_date", "epoch_ms_now",
})
# SQL special values that DuckDB parses as column references
VOLATILE_NAMES = frozenset({"current_timestamp", "current_date", "current_time", "localtime", "localtimestamp",
                            "current_localtimestamp", "current_localtime"})


@dataclass(frozen=True, eq=False)
class Statement:
    """A client statement, analysed (shared between requests: never mutated)."""

    text: str  # as the client sent it
    sql: str  # what runs: ``text`` without the catalog name
    kind: str  # DuckDB's statement type: SELECT, EXPLAIN, CREATE, INSERT, ...
    param_count: int = 0
    digest: str = ""  # normalised parse tree of a SELECT ("" when unknown)
    tables: tuple[str, ...] = ()  # base tables a SELECT reads (unqualified names, sorted)
    analysis: Analysis | None = None  # per table: constraints for pruning; qualified names
    cacheable: bool = False
    error: str = ""  # why DuckDB could not serialise the SELECT (reported when it runs)
    bound_sql: str = ""  # what the engine runs instead of ``sql`` (AT clauses -> views); "" : ``sql``
    shape: str = ""  # ``digest`` with the literals of filters erased: same result schema (see _erase_filters)
    plain_scan: PlainScan | None = None  # ``SELECT *`` / columns of one table, nothing else (plain_scan.py)

    @property
    def is_update(self) -> bool:
        """Changes data (runs as an update, returns no rows)."""
        return self.kind in WRITE_KINDS


@functools.lru_cache(maxsize=CACHE_SIZE)
def statement(text: str) -> Statement:
    """The analysis of ``text`` (LRU by text; a text that fails to parse raises each time)."""
    sql = strip_catalog(text)
    parts, found = _templates.tree(sql)
    if found is not None:  # a text of a known literal template: no DuckDB parse (template.py)
        kind, count, tree = found
    else:
        kind, parsed = classify(sql)
        count = len(parsed.named_parameters)
        if kind != "SELECT":
            return Statement(text, sql, kind, count)
        tree = orjson.loads(_parser.serialize(sql))
        if tree.get("error"):
            return Statement(text, sql, kind, count, error=tree.get("error_message") or "invalid SQL")
        if parts is not None:
            _templates.learn(parts, kind, count, tree)
    found: dict = {}
    clean = _scan(tree.get("statements", []), found)
    analysis = analyze(tree)
    # time travel: the engine runs the statement over the views analyze() named
    bound = ""
    if analysis.at_refs:
        try:
            bound = _parser.deserialize(tree)
        except duckdb.Error as exc:
            return Statement(text, sql, kind, count, error=f"AT (...) cannot be used in this statement: {exc}")
    digest = hashlib.sha256(orjson.dumps(clean, option=orjson.OPT_SORT_KEYS)).hexdigest()
    shape = hashlib.sha256(orjson.dumps(_erase_filters(clean), option=orjson.OPT_SORT_KEYS)).hexdigest()
    plain = None
    if not found.get("volatile") and not analysis.qualified and not analysis.at_refs and not analysis.ctes:
        plain = plain_scan(tree, count)
    return Statement(text, sql, kind, count, digest, tuple(sorted(ref.name for ref in analysis.tables.values())),
                     analysis, cacheable=not found.get("volatile") and not analysis.qualified
                     and not analysis.at_refs, bound_sql=bound, shape=shape, plain_scan=plain)


@functools.lru_cache(maxsize=256)
def as_of(st: Statement, version: int) -> Statement:
    """``st`` with every table of schema ``main`` that has no AT clause read ``AT (VERSION =>
    version)`` (the session option ``miniodb.as_of_version``); other statements unchanged."""
    if st.kind != "SELECT" or st.analysis is None or not (st.tables or st.analysis.at_refs):
        return st
    tree = orjson.loads(_parser.serialize(st.sql))
    ctes = st.analysis.ctes
    clause = {"unit": "VERSION", "expr": {"class": "CONSTANT", "type": "VALUE_CONSTANT", "alias": "",
                                          "query_location": 0, "literal": {"kind": "INTEGER", "text": str(int(version))}}}

    def walk(o: Any) -> None:
        if isinstance(o, list):
            for x in o:
                walk(x)
        elif isinstance(o, dict):
            if (o.get("type") == "BASE_TABLE" and not o.get("at_clause") and not o.get("catalog_name")
                    and str(o.get("schema_name") or "").lower() in ("", "main")
                    and str(o.get("table_name", "")).lower() not in ctes):
                o["at_clause"] = clause
            for v in o.values():
                walk(v)

    walk(tree)
    try:
        return statement(_parser.deserialize(tree))
    except duckdb.Error as exc:
        raise InvalidRequest(f"miniodb.as_of_version cannot be applied to this statement: {exc}") from exc


def as_statement(sql: str | Statement) -> Statement:
    return sql if isinstance(sql, Statement) else statement(sql)


class _Parser:
    """A private in-memory DuckDB that only parses (``json_serialize_sql``), one call at a time."""

    def __init__(self) -> None:
        self._db: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()

    def serialize(self, sql: str) -> str:
        with self._lock:
            if self._db is None:
                self._db = duckdb.connect(":memory:", config={
                    "enable_external_access": False, "autoinstall_known_extensions": False,
                    "autoload_known_extensions": False})
            return self._db.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0]

    def deserialize(self, tree: dict) -> str:
        """SQL text of a (rewritten) ``json_serialize_sql`` tree."""
        self.serialize("SELECT 1")  # opens the database on first use
        with self._lock:
            assert self._db is not None
            return self._db.execute("SELECT json_deserialize_sql(?::JSON)", [orjson.dumps(tree).decode()]
                                    ).fetchall()[0][0]


_parser = _Parser()
_templates = Templates(lambda sql: orjson.loads(_parser.serialize(sql)))


def _scan(obj: Any, found: dict) -> Any:
    """Copy of the parse tree without positions; notes volatile functions and sampling."""
    if isinstance(obj, list):
        return [_scan(x, found) for x in obj]
    if not isinstance(obj, dict):
        return obj
    cls = obj.get("class")
    if cls == "FUNCTION" and str(obj.get("function_name", "")).lower() in VOLATILE_FUNCTIONS:
        found["volatile"] = True
    elif cls == "COLUMN_REF":
        names = obj.get("column_names") or []
        if len(names) == 1 and str(names[0]).lower() in VOLATILE_NAMES:
            found["volatile"] = True
    if obj.get("sample") not in (None, {}):
        found["volatile"] = True
    return {k: _scan(v, found) for k, v in obj.items() if k not in POSITIONS}


_FILTERS = frozenset({"where_clause", "having", "qualify"})


def _erase_filters(obj: Any, inside: bool = False) -> Any:
    """The tree with the literals of WHERE / HAVING / QUALIFY clauses blanked. A filter decides
    which rows come back, never the types of the result's columns, so statements that differ
    only there (a point lookup with another key) share one result schema: ADBC prepares every
    new text, and the prepare's schema step is then a cache hit."""
    if isinstance(obj, list):
        return [_erase_filters(x, inside) for x in obj]
    if not isinstance(obj, dict):
        return obj
    if inside and obj.get("class") == "CONSTANT":
        return {"class": "CONSTANT"}
    return {k: _erase_filters(v, inside or k in _FILTERS) for k, v in obj.items()}


def strip_catalog(sql: str) -> str:
    """``sql`` with ``miniodb.`` removed from table references (``miniodb.main.t`` -> ``main.t``),
    so the names clients build from GetTables resolve. Other SQL is returned unchanged."""
    if CATALOG not in sql.lower():
        return sql
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except sqlglot.errors.SqlglotError:
        return sql
    if tree is None:
        return sql
    changed = False
    for table in tree.find_all(exp.Table):
        catalog, db = table.args.get("catalog"), table.args.get("db")
        if catalog is not None and catalog.name.lower() == CATALOG:
            table.set("catalog", None)
            changed = True
        elif catalog is None and db is not None and db.name.lower() == CATALOG:
            table.set("db", None)
            changed = True
    return tree.sql(dialect="duckdb") if changed else sql

"""Distributed query planner: one SELECT -> peer fragments + a coordinator merge statement.

Pure SQL rewriting on a sqlglot AST (DuckDB dialect); the only engine use is an in-memory DuckDB
over *empty* tables that checks every plan before it is returned: the merge statement, run over the
fragments' (empty) Arrow results, must bind to exactly the column names and types of the original
statement, or the planner falls back to a more conservative shape ("aggregate"/"topn" -> "rows" ->
"local"). Shapes:

* "aggregate": single-table aggregate; peers return partial aggregates per group (plan_agg).
* "topn": single-table scan with LIMIT (ORDER BY optional); peers return their top n + offset.
* "rows": anything else over base tables; peers return filtered, projected rows (plan_rows) and the
  coordinator runs the original statement over them.
* "local": no base tables, system tables, or nothing safe to distribute: the caller runs `sql`.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa
import sqlglot
from sqlglot import exp

from flight_server.coordinator.plan_agg import plan_aggregate
from flight_server.coordinator.plan_common import DIALECT, Unsupported, has_aggregate
from flight_server.coordinator.plan_rows import TableRefs, find_tables, plan_rows, plan_topn, row_filters

log = logging.getLogger(__name__)

_CACHE_SIZE = 512


@dataclass(frozen=True)
class Fragment:
    table: str
    alias: str
    sql: str


@dataclass(frozen=True)
class DistributedPlan:
    shape: str
    fragments: tuple[Fragment, ...]
    merge_sql: str
    explain: dict = field(default_factory=dict, compare=False)
    # table (catalog spelling) -> {"columns": [...], "where": SQL or None}: the rows of the table the
    # statement may read (plan_rows.row_filters); a peer's buffered rows shipped in its pin answer
    # are filtered and projected by it (the local-read shape: coordinator.py)
    rows: dict = field(default_factory=dict, compare=False)


def plan(sql: str, tables: Mapping[str, pa.Schema]) -> DistributedPlan:
    """Plan `sql` (one SELECT, DuckDB dialect, literals bound) over base `tables` (name -> schema).

    For any split of each table's rows into disjoint parts, `merge_sql` over {fragment.alias: UNION
    ALL of fragment.sql on each part} returns what `sql` returns over the whole tables (same rows,
    order when `sql` orders, column names and Arrow types). Shape "local": fragments == ()."""
    key = (sql, tuple(sorted((name, _schema_key(schema)) for name, schema in tables.items())))
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    try:
        result = _plan(sql, tables)
    except Exception as exc:  # noqa: BLE001 - planning never fails a query: run it as today
        log.warning("distributed planning failed; running the statement locally", exc_info=True)
        result = local_plan(sql, f"planner error: {type(exc).__name__}")
    with _cache_lock:
        _cache[key] = result
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return result


_cache: OrderedDict[tuple, DistributedPlan] = OrderedDict()
_cache_lock = threading.Lock()


def _schema_key(schema: pa.Schema) -> str:
    return ",".join(f"{f.name}:{f.type}" for f in schema)


def local_plan(sql: str, reason: str) -> DistributedPlan:
    return DistributedPlan("local", (), sql, {"shape": "local", "reason": reason})


def _plan(sql: str, tables: Mapping[str, pa.Schema]) -> DistributedPlan:
    try:
        tree = sqlglot.parse_one(sql, read=DIALECT)
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError, ValueError) as exc:
        return local_plan(sql, f"parse: {str(exc).splitlines()[0][:200]}")
    if not isinstance(tree, exp.Query):
        return local_plan(sql, "not a query")
    schemas = {name.lower(): schema for name, schema in tables.items()}
    try:
        refs = find_tables(tree, schemas, {name.lower(): name for name in tables})
    except Unsupported as exc:
        return local_plan(sql, str(exc))
    if not refs.occurrences:
        return local_plan(sql, "no base tables")
    filters = {refs.names[name]: {"columns": columns, "where": where.sql(DIALECT) if where is not None else None}
               for name, (columns, where) in row_filters(tree, refs, schemas).items()}
    checker = _Checker({name: schemas[name] for name in refs.names})
    try:
        result = _choose(sql, tree, refs, schemas, checker)
    finally:
        checker.close()
    result.rows.update(filters if result.fragments else {})
    return result


def _choose(sql, tree, refs, schemas, checker) -> DistributedPlan:
    try:
        expected = checker.describe_original(sql)
    except Exception as exc:  # noqa: BLE001 - DuckDB bind errors of any kind: run as today
        return local_plan(sql, f"original does not bind: {str(exc).splitlines()[0][:200]}")
    candidates = _candidates(tree, refs, schemas, checker.describe_original, expected)
    reasons = []
    for shape, builder in candidates:
        try:
            fragments, merge_sql = builder()
            result = _make(shape, fragments, merge_sql)
            got = checker.verify(result)
            if got != expected and shape != "aggregate":
                result = _make(shape, fragments, _rename(merge_sql, got, expected))
                got = checker.verify(result)
            if got != expected:
                raise Unsupported(f"merge binds to {got}, not {expected}")
            if reasons:
                result.explain["fallback"] = reasons
            return result
        except Unsupported as exc:
            reasons.append(f"{shape}: {exc}")
        except Exception as exc:  # noqa: BLE001 - a plan that does not bind is not used
            log.debug("plan %s rejected for %r", shape, sql, exc_info=True)
            reasons.append(f"{shape}: {str(exc).splitlines()[0][:200]}")
    return local_plan(sql, "; ".join(reasons))


def _candidates(tree: exp.Expression, refs: TableRefs, schemas, describe, expected) -> list:
    out = []
    select = _single_table_select(tree, refs)
    if select is not None:
        if has_aggregate(select) or select.args.get("group") is not None:
            out.append(("aggregate", lambda: plan_aggregate(select, refs, schemas, describe, expected)))
        elif select.args.get("limit") is not None:
            out.append(("topn", lambda: plan_topn(select, refs, schemas)))
    out.append(("rows", lambda: plan_rows(tree, refs, schemas)))
    return out


def _single_table_select(tree: exp.Expression, refs: TableRefs) -> exp.Select | None:
    """The statement when it is one SELECT over one base table, no joins/subqueries/CTEs."""
    if not isinstance(tree, exp.Select) or len(refs.occurrences) != 1:
        return None
    if tree.args.get("with") or tree.args.get("joins") or tree.args.get("laterals"):
        return None
    source = tree.args.get("from_")
    source = source and source.this
    if source is not refs.occurrences[0].node:
        return None
    for node in tree.find_all(exp.Select, exp.Subquery, exp.Window, exp.Qualify, exp.TableSample):
        if node is not tree:
            return None
    if tree.args.get("distinct") is not None and not has_aggregate(tree) and tree.args.get("group") is None:
        return None
    return tree


def _rename(merge_sql: str, got: list, expected: list) -> str:
    """Alias the top-level select items whose default name changed when sqlglot re-spelled them
    (DuckDB names an unaliased expression by its text)."""
    tree = sqlglot.parse_one(merge_sql, read=DIALECT)
    select = tree
    while isinstance(select, exp.SetOperation):
        select = select.this
    items = select.expressions if isinstance(select, exp.Select) else []
    if len(items) != len(expected) or len(got) != len(expected):
        raise Unsupported("result columns differ")
    if any(isinstance(i, (exp.Star, exp.Columns)) or isinstance(i.unalias().this, exp.Star) for i in items):
        raise Unsupported("result columns differ")
    for item, (name, _), (want, _) in zip(items, got, expected, strict=True):
        if name != want:
            item.replace(exp.alias_(item.unalias().copy(), exp.to_identifier(want, quoted=True)))
    return tree.sql(DIALECT)


def _make(shape: str, fragments: list[tuple[str, str]], merge_sql: str) -> DistributedPlan:
    frags = tuple(Fragment(table, f"__frag_{i}", sql) for i, (table, sql) in enumerate(fragments))
    explain = {
        "shape": shape,
        "fragments": [{"alias": f.alias, "table": f.table, "sql": f.sql} for f in frags],
        "merge_sql": merge_sql,
    }
    return DistributedPlan(shape, frags, merge_sql, explain)


class _Checker:
    """Binds statements in an in-memory DuckDB over empty tables (no data, no external access)."""

    def __init__(self, schemas: Mapping[str, pa.Schema]):
        self.schemas = schemas
        self.base = _connection("base")
        self.registered: list[str] = []
        for name, schema in schemas.items():
            self.base.register(name, schema.empty_table())
            self.registered.append(name)

    def describe_original(self, sql: str) -> list[tuple[str, str]]:
        return _describe(self.base, sql)

    def verify(self, result: DistributedPlan) -> list[tuple[str, str]]:
        """The (name, type) columns the merge statement binds to over the fragments' results."""
        merge = _connection("merge")
        names = []
        try:
            for frag in result.fragments:
                empty = self.base.sql(frag.sql).to_arrow_table()
                merge.register(frag.alias, empty)
                names.append(frag.alias)
            return _describe(merge, result.merge_sql)
        finally:
            for name in names:
                merge.unregister(name)

    def close(self) -> None:
        for name in self.registered:
            self.base.unregister(name)
        self.registered = []


_local = threading.local()


def _connection(role: str):
    import duckdb

    con = getattr(_local, role, None)
    if con is None:
        con = duckdb.connect(":memory:")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        setattr(_local, role, con)
    return con


def _describe(con, sql: str) -> list[tuple[str, str]]:
    return [(row[0], row[1]) for row in con.execute(f"DESCRIBE {sql}").fetchall()]

"""Base-table discovery, projection and filter pushdown: the "rows" and "topn" shapes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa
from sqlglot import exp
from sqlglot.optimizer.scope import Scope, traverse_scope

from flight_server.coordinator.plan_common import (
    DIALECT,
    Unsupported,
    conjuncts,
    has_aggregate,
    has_subquery,
    int_literal,
    is_volatile,
    quoted_column,
)

_SYSTEM_SCHEMAS = frozenset({"system", "information_schema", "pg_catalog"})
_PUSHABLE_JOIN_KINDS = frozenset({"", "INNER", "CROSS", "OUTER"})


@dataclass
class Occurrence:
    node: exp.Table
    name: str  # lower-case key into the schemas
    scope: Scope

    @property
    def ref(self) -> str:
        return self.node.alias_or_name.lower()


@dataclass
class TableRefs:
    occurrences: list[Occurrence] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # lower-case -> catalog spelling


def find_tables(tree: exp.Expression, schemas: Mapping[str, pa.Schema], spelling=None) -> TableRefs:
    """Every base-table reference of the statement, resolved through scopes (CTE names shadow)."""
    try:
        scopes = traverse_scope(tree)
    except Exception as exc:  # noqa: BLE001 - sqlglot raises several kinds on odd statements
        raise Unsupported(f"scope analysis: {exc}") from exc
    refs = TableRefs()
    seen: set[int] = set()
    for scope in scopes:
        for source in scope.sources.values():
            if not isinstance(source, exp.Table) or id(source) in seen:
                continue
            seen.add(id(source))
            if not isinstance(source.this, exp.Identifier):
                continue  # a table function: stays in the merge statement
            db = source.args.get("db")
            if db is not None and db.name.lower() in _SYSTEM_SCHEMAS:
                raise Unsupported(f"system table {source.sql(DIALECT)}")
            if source.args.get("catalog") is not None and db is None:
                raise Unsupported(f"qualified table {source.sql(DIALECT)}")
            name = source.name.lower()
            if name not in schemas:
                raise Unsupported(f"unknown table {source.name}")
            refs.occurrences.append(Occurrence(source, name, scope))
            refs.names[name] = (spelling or {}).get(name, source.name)
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        if id(table) in seen or not isinstance(table.this, exp.Identifier):
            continue
        if table.name.lower() not in ctes or table.args.get("db") is not None:
            raise Unsupported(f"unresolved table {table.sql(DIALECT)}")
    return refs


def needed_columns(tree: exp.Expression, refs: TableRefs, schemas) -> dict[str, list[str]]:
    """Per table, the columns any part of the statement may read (a superset is always safe)."""
    names: set[str] = set()
    everything: set[str] = set()
    by_ref = {occ.ref: occ.name for occ in refs.occurrences}
    for node in tree.walk():
        if isinstance(node, exp.Star) and isinstance(node.parent, (exp.Select, exp.Column)):
            everything.update(_star_tables(node, refs))
        elif isinstance(node, exp.Columns):
            everything.update(_star_tables(node, refs))
        elif isinstance(node, exp.Column):
            parts = [p.name.lower() for p in node.parts]
            names.update(parts)
            if len(parts) == 1 and parts[0] in by_ref:
                everything.add(by_ref[parts[0]])  # `SELECT t FROM t`: the row as a struct
        elif isinstance(node, exp.Join):
            if (node.args.get("method") or "").upper() == "NATURAL":
                everything.update(by_ref.values())
            names.update(i.name.lower() for i in node.args.get("using") or [])
    for occ in refs.occurrences:
        alias = occ.node.args.get("alias")
        if alias is not None and alias.args.get("columns"):
            everything.add(occ.name)  # positional column renames need every column
    out = {}
    for name in dict.fromkeys(occ.name for occ in refs.occurrences):
        columns = schemas[name].names
        out[name] = list(columns) if name in everything else [c for c in columns if c.lower() in names]
    return out


def _star_tables(star: exp.Expression, refs: TableRefs) -> set[str]:
    """The base tables a `*` / COLUMNS(...) expands over: those of its own SELECT's scope (nothing
    for `EXISTS (SELECT * ...)`; every table when the SELECT cannot be told)."""
    select = star.find_ancestor(exp.Select)
    if select is None:
        return {occ.name for occ in refs.occurrences}
    if isinstance(select.parent, exp.Exists) and star.parent is select:
        return set()
    return {occ.name for occ in refs.occurrences if occ.scope.expression is select}


def row_filters(tree: exp.Expression, refs: TableRefs, schemas) -> dict[str, tuple[list[str], exp.Expression | None]]:
    """Per base table (lower-case name): the columns the statement may read and the condition every
    use of the table applies (None: no such condition). The statement over any set of rows between
    the filtered, projected rows and all rows of each table returns the same answer."""
    needed = needed_columns(tree, refs, schemas)
    out = {}
    for name, columns in needed.items():
        filters = [_occurrence_filter(occ, refs, schemas) for occ in refs.occurrences if occ.name == name]
        where = None
        if all(f is not None for f in filters):
            unique = [f for i, f in enumerate(filters) if f not in filters[:i]]
            where = unique[0] if len(unique) == 1 else exp.or_(*[exp.paren(f) for f in unique])
        out[name] = (columns, where)
    return out


def plan_rows(tree: exp.Expression, refs: TableRefs, schemas) -> tuple[list, str]:
    """One fragment per base table: its used columns, filtered by the conjuncts every use applies."""
    fragments, aliases = [], {}
    for i, (name, (columns, where)) in enumerate(row_filters(tree, refs, schemas).items()):
        alias = f"__frag_{i}"
        occs = [occ for occ in refs.occurrences if occ.name == name]
        query = _projection(columns, exp.Table(this=exp.to_identifier(refs.names[name], quoted=True)))
        if where is not None:
            query = query.where(where, copy=False)
        fragments.append((refs.names[name], query.sql(DIALECT)))
        for occ in occs:
            aliases[id(occ.node)] = alias
    return fragments, replaced_sql(tree, refs, aliases)


def plan_topn(select: exp.Select, refs: TableRefs, schemas) -> tuple[list, str]:
    """Single-table SELECT ... [ORDER BY ...] LIMIT n [OFFSET m]: each peer returns its top n + m."""
    limit = select.args.get("limit")
    count = int_literal(limit.expression) if isinstance(limit, exp.Limit) else None
    offset_node = select.args.get("offset")
    offset = int_literal(offset_node.expression) if offset_node is not None else 0
    if count is None or offset is None or limit.args.get("offset") is not None:
        raise Unsupported("LIMIT/OFFSET is not a plain integer")
    occ = refs.occurrences[0]
    where = select.args.get("where")
    order = select.args.get("order")
    if (where is not None and is_volatile(where)) or (order is not None and is_volatile(order)):
        raise Unsupported("volatile filter or order")
    source = exp.Table(this=exp.to_identifier(refs.names[occ.name], quoted=True))
    if occ.node.alias:
        source.set("alias", exp.TableAlias(this=exp.to_identifier(occ.node.alias)))
    query = _projection(needed_columns(select, refs, schemas)[occ.name], source)
    if where is not None:
        query = query.where(where.this.copy(), copy=False)
    if order is not None:
        query = query.order_by(*[_resolve_order(o, select, schemas[occ.name]) for o in order.expressions], copy=False)
    query = query.limit(count + offset, copy=False)
    fragments = [(refs.names[occ.name], query.sql(DIALECT))]
    return fragments, replaced_sql(select, refs, {id(occ.node): "__frag_0"})


def _resolve_order(ordered: exp.Ordered, select: exp.Select, schema: pa.Schema) -> exp.Ordered:
    """An ORDER BY item over table columns: positions and select aliases become expressions."""
    ordered = ordered.copy()
    key = ordered.this
    items = select.expressions
    position = int_literal(key)
    if position is not None:
        if len(items) == 1 and isinstance(items[0], exp.Star) and not any(items[0].args.values()):
            items = [quoted_column(c) for c in schema.names]  # plain SELECT *: schema order
        if not 1 <= position <= len(items) or any(isinstance(i, exp.Star) for i in items):
            raise Unsupported("ORDER BY position")
        ordered.set("this", items[position - 1].unalias().copy())
    elif isinstance(key, exp.Column) and not key.table:
        columns = {c.lower() for c in schema.names}
        if key.name.lower() not in columns:
            for item in items:
                if isinstance(item, exp.Alias) and item.alias.lower() == key.name.lower():
                    ordered.set("this", item.this.copy())
                    break
    return ordered


def _projection(columns: list[str], source: exp.Table) -> exp.Select:
    items = [quoted_column(c) for c in columns] or [exp.alias_(exp.true(), "__row", quoted=True)]
    return _select(*items).from_(source, copy=False)


def replaced_sql(tree: exp.Expression, refs: TableRefs, aliases: dict[int, str]) -> str:
    """`tree` as SQL with each base-table reference read from its fragment alias (same alias name)."""
    swaps = []
    for occ in refs.occurrences:
        alias = aliases.get(id(occ.node))
        if alias is None:
            continue
        old_alias = occ.node.args.get("alias")
        new_alias = old_alias.copy() if old_alias is not None else exp.TableAlias(
            this=exp.to_identifier(occ.node.name, quoted=True))
        new = exp.Table(this=exp.to_identifier(alias), alias=new_alias)
        occ.node.replace(new)
        swaps.append((occ.node, new))
    try:
        return tree.sql(DIALECT)
    finally:
        for old, new in swaps:
            new.replace(old)


def _occurrence_filter(occ: Occurrence, refs: TableRefs, schemas) -> exp.Expression | None:
    """AND of the conjuncts that may be evaluated on this table alone, before everything else."""
    parent = occ.node.parent
    select = parent.parent if isinstance(parent, (exp.From, exp.Join)) else None
    if not isinstance(select, exp.Select) or select.args.get("laterals"):
        return None
    joins = select.args.get("joins") or []
    for join in joins:
        if join.args.get("method") or (join.args.get("kind") or "").upper() not in _PUSHABLE_JOIN_KINDS:
            return None
    sources = [select.args["from_"].this] + [join.this for join in joins]
    index = next((i for i, s in enumerate(sources) if s is occ.node), None)
    if index is None:
        return None
    null_supplied = False
    for i, join in enumerate(joins, start=1):
        side = (join.args.get("side") or "").upper()
        if (side == "LEFT" and index == i) or (side == "RIGHT" and index < i) or (side == "FULL" and index <= i):
            null_supplied = True
    found = []
    where = select.args.get("where")
    if where is not None and not null_supplied:
        found += _implied(where.this, occ, schemas)
    if isinstance(parent, exp.Join) and (parent.args.get("side") or "").upper() in ("", "LEFT"):
        found += _implied(parent.args.get("on"), occ, schemas)
    return _conjunction(found)


def _implied(condition: exp.Expression | None, occ: Occurrence, schemas) -> list[exp.Expression]:
    """Conditions on this table alone that `condition` implies: its own conjuncts, and for a
    conjunct `A OR B` whose every branch restricts this table, the OR of those restrictions."""
    out = []
    for conjunct in conjuncts(condition):
        if _only_this(conjunct, occ, schemas):
            out.append(conjunct)
        elif isinstance(_unparen(conjunct), exp.Or):
            branches = [_conjunction(_implied(b, occ, schemas)) for b in _disjuncts(conjunct)]
            if branches and all(b is not None for b in branches):
                out.append(exp.or_(*[exp.paren(b) for b in branches]))
    return out


def _conjunction(found: list[exp.Expression]) -> exp.Expression | None:
    pushed = []
    for conjunct in found:
        conjunct = conjunct.copy()
        for column in conjunct.find_all(exp.Column):
            column.set("table", None)
        conjunct = exp.paren(conjunct) if isinstance(conjunct, exp.Or) else conjunct
        if conjunct not in pushed:
            pushed.append(conjunct)
    if not pushed:
        return None
    return exp.and_(*pushed) if len(pushed) > 1 else pushed[0]


def _unparen(node: exp.Expression) -> exp.Expression:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _disjuncts(condition: exp.Expression) -> list[exp.Expression]:
    condition = _unparen(condition)
    if isinstance(condition, exp.Or):
        return _disjuncts(condition.this) + _disjuncts(condition.expression)
    return [condition]


def _only_this(condition: exp.Expression, occ: Occurrence, schemas) -> bool:
    """The condition reads only columns of this table occurrence and is deterministic."""
    if has_subquery(condition) or is_volatile(condition) or has_aggregate(condition):
        return False
    if any(True for _ in condition.find_all(exp.Window, exp.Lambda)):
        return False
    own = {c.lower() for c in schemas[occ.name].names}
    columns = list(condition.find_all(exp.Column))
    if not columns:
        return False
    for column in columns:
        if column.args.get("db") is not None or isinstance(column.this, exp.Star):
            return False
        name = column.name.lower()
        if name not in own:
            return False
        if column.table:
            if column.table.lower() != occ.ref:
                return False
        elif not _unambiguous(name, occ, schemas):
            return False
    return True


def _unambiguous(name: str, occ: Occurrence, schemas) -> bool:
    for source in occ.scope.sources.values():
        if source is occ.node:
            continue
        if isinstance(source, exp.Table):
            schema = schemas.get(source.name.lower()) if isinstance(source.this, exp.Identifier) else None
            if schema is None or name in {c.lower() for c in schema.names}:
                return False
        elif isinstance(source, Scope):
            query = source.expression
            if not isinstance(query, exp.Select) or query.is_star:
                return False
            if name in {s.lower() for s in query.named_selects}:
                return False
        else:
            return False
    return True


def _select(*items: exp.Expression) -> exp.Select:
    return exp.Select().select(*items, copy=False)

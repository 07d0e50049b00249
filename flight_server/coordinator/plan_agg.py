"""The "aggregate" shape: peers compute partial aggregates per group, the coordinator combines them.

Partial columns carry explicit aliases (`__g0` group keys, `__d0` DISTINCT arguments pushed into the
peers' GROUP BY, `__p0_sum`/`__p0_cnt`... partial aggregates). Every combined aggregate is cast to
its single-node type, so expressions over aggregates, HAVING and ORDER BY compute as on one node.
Variance family: per part (count, mean, M2) combined with Chan et al.'s formula; the overall mean
per group comes from a window over the gathered partials, so there is no catastrophic cancellation.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlglot
from sqlglot import exp

from flight_server.coordinator.plan_common import (
    DIALECT,
    Unsupported,
    function_name,
    has_aggregate,
    int_literal,
    is_aggregate,
    is_volatile,
    quoted_column,
)
from flight_server.coordinator.plan_rows import TableRefs

_SAME = (
    exp.Sum, exp.Min, exp.Max, exp.LogicalAnd, exp.LogicalOr,
    exp.BitwiseAndAgg, exp.BitwiseOrAgg, exp.BitwiseXorAgg,
)
_COUNTS = (exp.Count,)
_VARIANCES = {
    exp.Stddev: ("samp", True), exp.StddevSamp: ("samp", True), exp.StddevPop: ("pop", True),
    exp.Variance: ("samp", False), exp.VariancePop: ("pop", False),
}
_DISTINCT_OK = (exp.Count, exp.Sum, exp.Avg, exp.Min, exp.Max)

# Templates over placeholder columns N, MEAN, M2, GM (replaced by the partial columns on the AST).
_GROUP_MEAN = "SUM(N * MEAN) OVER () / NULLIF(SUM(N) OVER (), 0)"
_M2 = "SUM(M2 + N * (MEAN - GM) * (MEAN - GM))"
_VAR = {
    "pop": f"CASE WHEN SUM(N) > 0 THEN {_M2} / SUM(N) END",
    "samp": f"CASE WHEN SUM(N) > 1 THEN {_M2} / (SUM(N) - 1) END",
}


def plan_aggregate(
    select: exp.Select,
    refs: TableRefs,
    schemas,
    describe: Callable[[str], list[tuple[str, str]]],
    expected: list[tuple[str, str]],
) -> tuple[list, str]:
    occ = refs.occurrences[0]
    table = refs.names[occ.name]
    sel = select.copy()
    if any(isinstance(item, exp.Star) or item.find(exp.Star, exp.Columns) is not None
           and not has_aggregate(item) for item in sel.expressions):
        raise Unsupported("SELECT * with aggregates")
    _unqualify(sel, occ.ref)
    columns = {c.lower() for c in schemas[occ.name].names}
    keys = _group_keys(sel, columns)
    where = sel.args.get("where")
    if where is not None and is_volatile(where):
        raise Unsupported("volatile WHERE")
    if any(is_volatile(k) for k in keys):
        raise Unsupported("volatile GROUP BY key")

    calls = _calls(sel)
    source = exp.Table(this=exp.to_identifier(table, quoted=True))
    if calls:
        probe = _select(*[exp.alias_(c.copy(), f"a{i}") for i, c in enumerate(calls)]).from_(source.copy(), copy=False)
        types = [t for _, t in describe(probe.sql(DIALECT))]
    else:
        types = []
    builder = _Partials(keys)
    merged = {id(call): builder.add(call, typ) for call, typ in zip(calls, types, strict=True)}

    def sub(node: exp.Expression) -> exp.Expression:
        if id(node) in merged:
            return merged[id(node)].copy()
        if not isinstance(node, exp.Literal):
            for i, key in enumerate(keys):
                if node == key:
                    return quoted_column(f"__g{i}")
        for child in list(node.iter_expressions()):
            new = sub(child)
            if new is not child:
                child.replace(new)
        return node

    items = []
    aliases = set()
    for item, (name, typ) in zip(sel.expressions, expected, strict=True):
        if isinstance(item, exp.Alias):
            aliases.add(item.alias.lower())
        body = sub(item.this if isinstance(item, exp.Alias) else item)
        items.append(exp.alias_(_cast(body, typ), exp.to_identifier(name, quoted=True)))

    merge = _select(*items).from_(builder.merge_source(), copy=False)
    if keys:
        merge = merge.group_by(*[quoted_column(f"__g{i}") for i in range(len(keys))], copy=False)
    having = sel.args.get("having")
    if having is not None:
        merge.set("having", exp.Having(this=sub(having.this)))
    order = sel.args.get("order")
    if order is not None:
        for ordered in order.expressions:
            key = ordered.this
            keep = int_literal(key) is not None or (
                isinstance(key, exp.Column) and not key.table and key.name.lower() in aliases)
            if not keep:
                ordered.set("this", sub(key))
        merge.set("order", order)
    for arg in ("limit", "offset", "distinct"):
        if sel.args.get(arg) is not None:
            merge.set(arg, sel.args[arg])

    frag = _select(*builder.fragment_items()).from_(source, copy=False)
    if where is not None:
        frag = frag.where(where.this, copy=False)
    group_exprs = [k.copy() for k in keys] + [d.copy() for d in builder.distinct]
    if group_exprs:
        frag = frag.group_by(*group_exprs, copy=False)
    return [(table, frag.sql(DIALECT))], merge.sql(DIALECT)


class _Partials:
    def __init__(self, keys: list[exp.Expression]):
        self.keys = keys
        self.distinct: list[exp.Expression] = []
        self.partials: list[exp.Expression] = []
        self.windows: list[exp.Expression] = []
        self.count = 0

    def _partial(self, expr: exp.Expression, suffix: str) -> exp.Column:
        name = f"__p{self.count}_{suffix}"
        self.partials.append(exp.alias_(expr, exp.to_identifier(name, quoted=True)))
        return quoted_column(name)

    def add(self, call: exp.Expression, typ: str) -> exp.Expression:
        """Register the partials of one aggregate call; return its merge expression."""
        where = None
        agg = call
        if isinstance(call, exp.Filter):
            agg, where = call.this, call.expression

        def wrap(expr: exp.Expression) -> exp.Expression:
            return exp.Filter(this=expr, expression=where.copy()) if where is not None else expr

        try:
            if isinstance(agg.this, exp.Distinct):
                return _cast(self._distinct(agg, where), typ)
            name = function_name(agg)
            if isinstance(agg, _COUNTS):
                col = self._partial(call.copy(), "cnt")
                return _cast(exp.func("COALESCE", exp.Sum(this=col), exp.Literal.number(0)), typ)
            if isinstance(agg, exp.CountIf):  # NULL (not 0) over no rows, like SUM
                return _cast(exp.Sum(this=self._partial(call.copy(), "cnt")), typ)
            if isinstance(agg, _SAME):
                _single_argument(agg)
                col = self._partial(call.copy(), "part")
                return _cast(type(agg)(this=col), typ)
            if isinstance(agg, exp.Avg) or name == "mean":
                _single_argument(agg)
                if typ != "DOUBLE":
                    raise Unsupported(f"AVG of type {typ}")
                arg = agg.this if isinstance(agg, exp.Avg) else agg.expressions[0]
                total = self._partial(wrap(exp.Sum(this=arg.copy())), "sum")
                count = self._partial(wrap(exp.Count(this=arg.copy())), "cnt")
                ratio = exp.Div(this=exp.cast(exp.Sum(this=total), "DOUBLE"),
                                expression=exp.func("NULLIF", exp.Sum(this=count), exp.Literal.number(0)))
                return _cast(ratio, typ)
            if type(agg) in _VARIANCES:
                _single_argument(agg)
                if typ != "DOUBLE":
                    raise Unsupported(f"{name} of type {typ}")
                return _cast(self._variance(agg, wrap, *_VARIANCES[type(agg)]), typ)
        finally:
            self.count += 1
        raise Unsupported(f"aggregate {name or type(agg).__name__} is not decomposable")

    def _distinct(self, agg: exp.Expression, where) -> exp.Expression:
        args = agg.this.expressions
        if where is not None or len(args) != 1 or not isinstance(agg, _DISTINCT_OK):
            raise Unsupported("DISTINCT aggregate with FILTER or several arguments")
        if args[0] not in self.distinct:
            self.distinct.append(args[0])
        merged = agg.copy()
        merged.this.set("expressions", [quoted_column(f"__d{self.distinct.index(args[0])}")])
        return merged

    def _variance(self, agg, wrap, kind: str, root: bool) -> exp.Expression:
        value = exp.cast(agg.this.copy(), "DOUBLE")
        n = self._partial(wrap(exp.Count(this=agg.this.copy())), "n")
        mean = self._partial(wrap(exp.Avg(this=value.copy())), "mean")
        m2 = self._partial(exp.Mul(this=wrap(exp.VariancePop(this=value.copy())),
                                   expression=wrap(exp.Count(this=agg.this.copy()))), "m2")
        gm_name = f"__p{self.count}_gm"
        gm = _template(_GROUP_MEAN, N=n, MEAN=mean)
        partition = [quoted_column(f"__g{i}") for i in range(len(self.keys))]
        for window in gm.find_all(exp.Window):
            if partition:
                window.set("partition_by", [p.copy() for p in partition])
        self.windows.append(exp.alias_(gm, exp.to_identifier(gm_name, quoted=True)))
        var = _template(_VAR[kind], N=n, MEAN=mean, M2=m2, GM=quoted_column(gm_name))
        return exp.func("SQRT", var) if root else var

    def fragment_items(self) -> list[exp.Expression]:
        items = [exp.alias_(k.copy(), exp.to_identifier(f"__g{i}", quoted=True)) for i, k in enumerate(self.keys)]
        items += [exp.alias_(d.copy(), exp.to_identifier(f"__d{i}", quoted=True)) for i, d in enumerate(self.distinct)]
        items += self.partials
        return items or [exp.alias_(exp.true(), "__row", quoted=True)]

    def merge_source(self) -> exp.Expression:
        if not self.windows:
            return exp.Table(this=exp.to_identifier("__frag_0"))
        inner = _select(exp.Star(), *self.windows).from_("__frag_0", copy=False)
        return exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier("__merge")))


def _calls(sel: exp.Select) -> list[exp.Expression]:
    """Outermost aggregate calls (FILTER clauses included) of the select list, HAVING and ORDER BY."""
    found: list[exp.Expression] = []

    def visit(node: exp.Expression) -> None:
        if is_aggregate(node):
            call = node.parent if isinstance(node.parent, exp.Filter) else node
            if any(is_aggregate(inner) for inner in node.walk() if inner is not node):
                raise Unsupported("nested aggregate")
            found.append(call)
            return
        for child in node.iter_expressions():
            visit(child)

    for part in [*sel.expressions, sel.args.get("having"), sel.args.get("order")]:
        if part is not None:
            visit(part)
    for call in found:
        parent = call.parent
        if isinstance(parent, (exp.IgnoreNulls, exp.RespectNulls, exp.WithinGroup)):
            raise Unsupported("aggregate modifier")
    return found


def _group_keys(sel: exp.Select, columns: set[str]) -> list[exp.Expression]:
    group = sel.args.get("group")
    if group is None:
        return []
    if any(group.args.get(a) for a in ("rollup", "cube", "grouping_sets", "totals")) or any(
        isinstance(e, (exp.Rollup, exp.Cube, exp.GroupingSets)) for e in group.expressions
    ):
        raise Unsupported("ROLLUP / CUBE / GROUPING SETS")
    items = sel.expressions
    if group.args.get("all"):
        return [i.unalias().copy() for i in items if not has_aggregate(i)]
    keys = []
    for expr in group.expressions:
        position = int_literal(expr)
        if position is not None:
            if not 1 <= position <= len(items):
                raise Unsupported("GROUP BY position")
            expr = items[position - 1].unalias()
        elif isinstance(expr, exp.Column) and not expr.table and expr.name.lower() not in columns:
            for item in items:
                if isinstance(item, exp.Alias) and item.alias.lower() == expr.name.lower():
                    expr = item.this
                    break
        if expr not in keys:
            keys.append(expr.copy())
    return keys


def _unqualify(sel: exp.Select, ref: str) -> None:
    for column in sel.find_all(exp.Column):
        if column.table and column.table.lower() == ref and column.args.get("db") is None:
            column.set("table", None)


def _single_argument(agg: exp.Expression) -> None:
    extra = [k for k, v in agg.args.items() if v is not None and k not in ("this", "big_int")]
    if isinstance(agg, exp.Anonymous):
        extra = ["expressions"] if len(agg.expressions) != 1 else []
    if extra:
        raise Unsupported(f"{function_name(agg)} with arguments {extra}")


def _cast(expr: exp.Expression, typ: str) -> exp.Expression:
    try:
        datatype = exp.DataType.build(typ, dialect=DIALECT)
    except Exception:  # noqa: BLE001 - a type sqlglot cannot spell: leave the expression as is
        return expr
    if isinstance(expr, exp.Cast) and expr.to == datatype:
        return expr
    return exp.Cast(this=expr, to=datatype)


def _template(sql: str, **columns: exp.Expression) -> exp.Expression:
    tree = sqlglot.parse_one(sql, read=DIALECT)
    for column in list(tree.find_all(exp.Column)):
        if column.name in columns:
            column.replace(columns[column.name].copy())
    return tree


def _select(*items: exp.Expression) -> exp.Select:
    return exp.Select().select(*items, copy=False)

"""A minimal stand-in for the planner (:mod:`.plan`, helper 13a): always shape "rows".

Each base table becomes one fragment ``SELECT * FROM t`` (every peer returns its part of the
table) and the merge SQL is the original statement with each reference to ``t`` reading the
gathered rows (``__frag_i``) instead. Correct for any statement, pushes nothing down. The
interface (Fragment, DistributedPlan, plan) is the one the real planner keeps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa
import sqlglot
from sqlglot import exp


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
    explain: dict = field(default_factory=dict)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def plan(sql: str, tables: Mapping[str, pa.Schema]) -> DistributedPlan:
    if not tables:
        return DistributedPlan("local", (), sql, {"shape": "local"})
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except sqlglot.errors.ParseError:
        return DistributedPlan("local", (), sql, {"shape": "local", "why": "unparsed"})
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    names = {n.lower(): n for n in tables}
    aliases = {low: f"__frag_{i}" for i, low in enumerate(sorted(names))}
    for t in list(tree.find_all(exp.Table)):
        low = t.name.lower()
        if low not in aliases or low in ctes or (t.db and t.db.lower() not in ("main", "")) or t.catalog:
            continue
        keep = t.alias_or_name if t.alias else t.name  # columns qualified by the table name still resolve
        t.replace(exp.Table(this=exp.to_identifier(aliases[low]), alias=exp.TableAlias(
            this=exp.to_identifier(keep, quoted=True))))
    fragments = tuple(Fragment(names[low], aliases[low], f"SELECT * FROM {_quote(names[low])}")
                      for low in sorted(names))
    merge = tree.sql(dialect="duckdb")
    return DistributedPlan("rows", fragments, merge, {
        "shape": "rows", "fragments": [{"alias": f.alias, "table": f.table, "sql": f.sql} for f in fragments]})

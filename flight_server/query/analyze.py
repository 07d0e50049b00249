"""What a SELECT reads, from DuckDB's own parser (``json_serialize_sql``), never from regex.

:func:`analyze` returns the base tables a statement references and, per table, the literal
range constraints that every reference of it carries (top-level ``AND`` terms of a WHERE
over a single-table FROM: comparisons, BETWEEN and IN lists with literals or parameters). The catalog uses the constraints to prune files with their
min/max statistics; a table referenced anywhere without constraints is not pruned.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..stats import PARAMETER, Constraint

# comparison type -> (op, op when the literal is on the left)
_CMP = {
    "COMPARE_EQUAL": ("=", "="),
    "COMPARE_GREATERTHAN": (">", "<"),
    "COMPARE_GREATERTHANOREQUALTO": (">=", "<="),
    "COMPARE_LESSTHAN": ("<", ">"),
    "COMPARE_LESSTHANOREQUALTO": ("<=", ">="),
}


@dataclass
class TableRef:
    schema: str
    name: str
    constraint_sets: list[list[Constraint]] = field(default_factory=list)
    unconstrained: bool = False


@dataclass(frozen=True)
class AtRef:
    """A time-travel reference ``t AT (VERSION => 12)`` / ``AT (TIMESTAMP => '...')``: the
    statement reads the view ``view`` instead (bound to the table's files at that point)."""

    view: str
    name: str
    unit: str  # VERSION | TIMESTAMP (anything else is refused when it runs)
    value: str | None  # the literal's text; None: not a literal (refused when it runs)


@dataclass
class Analysis:
    tables: dict[str, TableRef]  # key: lower-cased unqualified name (schema "" or "main")
    qualified: list[tuple[str, str]]  # (schema, name) references with another schema
    ctes: set[str]
    at_refs: dict[str, AtRef] = field(default_factory=dict)  # key: view name


def at_view(name: str, unit: str, value: str | None) -> str:
    """The view name a time-travel reference is rewritten to (deterministic per clause)."""
    digest = hashlib.sha256(f"{unit}|{value}".encode()).hexdigest()[:12]
    tag = f"v{value}" if unit == "VERSION" and value is not None and value.isdigit() else digest
    return f"__at_{name.lower()}_{tag}"


def _constant(node: dict) -> tuple[str, str] | None:
    """(literal text, kind) of a constant, or of a parameter (``?``/``$n``: text is its 1-based
    position, kind ``PARAMETER``, bound to the value at execution: :func:`stats.bind_params`)."""
    if node.get("class") == "PARAMETER":
        ident = str(node.get("identifier", ""))
        return (ident, PARAMETER) if ident.isdigit() else None
    if node.get("class") == "CONSTANT":
        lit = node.get("literal") or {}
        if lit.get("kind") in (None, "NULL"):
            return None
        return lit.get("text", ""), lit.get("kind", "")
    if node.get("class") == "CAST" and not node.get("try_cast"):
        inner = _constant(node.get("child") or {})
        if inner is not None:
            type_name = (node.get("type_expr") or {}).get("type_name") or inner[1]
            return inner[0], str(type_name).upper()
    return None


def _column(node: dict, owners: frozenset[str] = frozenset()) -> str | None:
    """The column a COLUMN_REF names, if it belongs to the table (qualifier in ``owners``)."""
    if node.get("class") == "COLUMN_REF":
        names = [n.lower() for n in node.get("column_names") or []]
        if len(names) == 1 or (len(names) >= 2 and names[-2] in owners):
            return names[-1]
    return None


def _conjuncts(node: dict | None) -> list[dict]:
    if not node:
        return []
    if node.get("class") == "CONJUNCTION" and node.get("type") == "CONJUNCTION_AND":
        out = []
        for child in node.get("children", []):
            out.extend(_conjuncts(child))
        return out
    return [node]


def constraints_of(where: dict | None, owners: frozenset[str] = frozenset()) -> list[Constraint]:
    out: list[Constraint] = []
    for term in _conjuncts(where):
        cls = term.get("class")
        if cls == "COMPARISON" and term.get("type") in _CMP:
            op, flipped = _CMP[term["type"]]
            left, right = term.get("left") or {}, term.get("right") or {}
            col, const = _column(left, owners), _constant(right)
            if col is None:
                col, const, op = _column(right, owners), _constant(left), flipped
            if col is not None and const is not None:
                out.append(Constraint(col, op, const[0], const[1]))
        elif cls == "OPERATOR" and term.get("type") == "COMPARE_IN":
            children = term.get("children") or []
            col = _column(children[0], owners) if children else None
            values = [_constant(c) for c in children[1:]]
            if col is not None and values and all(v is not None for v in values):
                out.append(Constraint(col, "in", "", "", values=tuple(values)))
        elif cls == "BETWEEN":
            col = _column(term.get("input") or {}, owners)
            lo, hi = _constant(term.get("lower") or {}), _constant(term.get("upper") or {})
            if col is not None and lo is not None:
                out.append(Constraint(col, ">=", lo[0], lo[1]))
            if col is not None and hi is not None:
                out.append(Constraint(col, "<=", hi[0], hi[1]))
    return out


def _walk(obj: Any, analysis: Analysis, where_for_table: dict | None) -> None:
    if isinstance(obj, list):
        for item in obj:
            _walk(item, analysis, None)
        return
    if not isinstance(obj, dict):
        return
    if obj.get("type") == "BASE_TABLE" and "table_name" in obj:
        schema = (obj.get("schema_name") or "").lower()
        name = obj["table_name"]
        catalog = obj.get("catalog_name") or ""
        at = obj.get("at_clause")
        if at and not catalog and schema in ("", "main"):
            unit = str(at.get("unit") or "").upper()
            const = _constant(at.get("expr") or {})
            value = const[0] if const is not None else None
            view = at_view(name, unit, value)
            analysis.at_refs[view] = AtRef(view, name, unit, value)
            obj["table_name"], obj["at_clause"] = view, None  # the statement reads the view
            obj["qualified_name"] = {"path": [view]}
            if not obj.get("alias"):
                obj["alias"] = name  # ``t.column`` keeps working
        elif catalog or schema not in ("", "main"):
            analysis.qualified.append((schema, name))
        else:
            ref = analysis.tables.setdefault(name.lower(), TableRef(schema, name))
            if where_for_table is None:
                ref.unconstrained = True
            else:
                owners = frozenset(x.lower() for x in (name, obj.get("alias") or "") if x)
                cons = constraints_of(where_for_table, owners)
                if cons:
                    ref.constraint_sets.append(cons)
                else:
                    ref.unconstrained = True
        return
    cte_map = obj.get("cte_map")
    if isinstance(cte_map, dict):
        for item in cte_map.get("map", []):
            if isinstance(item, dict) and "key" in item:
                analysis.ctes.add(str(item["key"]).lower())
    if obj.get("type") == "SELECT_NODE":
        from_table = obj.get("from_table") or {}
        single = from_table.get("type") == "BASE_TABLE"
        for key, value in obj.items():
            if key == "from_table" and single:
                _walk(value, analysis, obj.get("where_clause") or {})
            else:
                _walk(value, analysis, None)
        return
    for value in obj.values():
        _walk(value, analysis, None)


def parse_tree(serialized: str) -> dict:
    return orjson.loads(serialized)


def analyze(tree: dict) -> Analysis:
    """Walk the output of ``json_serialize_sql`` (already checked to have no error).

    Time-travel references are rewritten *in* ``tree`` to their views (:class:`AtRef`)."""
    analysis = Analysis(tables={}, qualified=[], ctes=set())
    _walk(tree.get("statements", []), analysis, None)
    for cte in analysis.ctes:
        analysis.tables.pop(cte, None)
    return analysis

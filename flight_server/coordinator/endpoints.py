"""Opt-in multi-endpoint FlightInfo for plain scans (``coordinator.multi_endpoint`` or the
session option ``miniodb.multi_endpoint``).

Only a statement that is row-wise over one table qualifies: ``SELECT <expressions> FROM t
[WHERE ...]`` with no ORDER BY, LIMIT/OFFSET, DISTINCT, GROUP BY/HAVING/QUALIFY, aggregate,
window, subquery, join, CTE or set operation. For such a statement the answer over the whole
table is the concatenation of the statement's answers over any split of the table's rows, so
each node can run the statement itself over its part, and no merge is needed.

The coordinator pins and snapshots exactly as for any distributed query (coordinator.py), then
returns one endpoint per node that holds data of the table (placed files and/or pinned
buffered rows). Each endpoint's ticket is self-contained and signed with the cluster
credential (cluster.py ``Signer``): the query id, the table, the SQL, the node's files, whether
to add its pinned rows, and the result schema (IPC, base64). It expires with the pin
(``coordinator.pin_ttl``). The endpoint's location is that node's Flight address (the
coordinator's own endpoint has its address too, or none when it is not registered: redeem
where the FlightInfo came from). A ticket that carries pinned rows is only answered by the
node holding the pin (any other node answers NOT_FOUND); a files-only ticket is answered by
any node. Every endpoint is cast to the FlightInfo's schema, so all return identical types.
Pins are not released when an endpoint is read (a client may read it again): the TTL ends
them; the pins of nodes without buffered rows of the table are released at once.

A cluster that lost a node while pinning (its buffered rows would be missing) falls back to
the single endpoint, which reports the missing node in its headers.
"""

from __future__ import annotations

import base64
from typing import Any

import pyarrow as pa
import sqlglot
from sqlglot import exp

from ..query.statement import Statement
from .cluster import ACTION_RELEASE
from .plan_common import DIALECT, has_aggregate

_FORBIDDEN = (exp.Window, exp.Subquery, exp.Join, exp.With, exp.Order, exp.Limit, exp.Offset, exp.Group,
              exp.Having, exp.Qualify, exp.Distinct, exp.TableSample, exp.Lateral, exp.Union, exp.Intersect,
              exp.Except)


def plain_scan(sql: str) -> bool:
    """Is ``sql`` a row-wise SELECT over exactly one base table (see the module doc)?"""
    try:
        trees = sqlglot.parse(sql, read=DIALECT)
    except sqlglot.errors.ParseError:
        return False
    if len(trees) != 1 or not isinstance(trees[0], exp.Select):
        return False
    tree = trees[0]
    if any(True for _ in tree.find_all(*_FORBIDDEN)):
        return False
    if sum(1 for _ in tree.find_all(exp.Select)) != 1 or has_aggregate(tree):
        return False
    from_ = tree.args.get("from") or tree.args.get("from_")
    if from_ is None or not isinstance(from_.this, exp.Table) or from_.expressions:
        return False
    table = from_.this
    return isinstance(table.this, exp.Identifier) and not table.args.get("db") and not table.args.get("catalog")


def encode_schema(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode()


def decode_schema(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def conform_to(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """The fragment's answer with exactly the FlightInfo's column types."""
    if table.schema.equals(schema):
        return table
    cols = [table.column(i).cast(f.type) for i, f in enumerate(schema)]
    return pa.Table.from_arrays(cols, schema=schema)


def endpoints(coord: Any, st: Statement, schema: pa.Schema) -> list[tuple[str, bytes]] | None:
    """[(location or "", signed ticket)] for a plain scan, or None: use the single endpoint."""
    if st.param_count or not plain_scan(st.sql):
        return None
    session = coord.begin(st, local_read=False)  # each endpoint reads its node's pinned rows
    if session is None:
        return None
    if session.missing or len(session.plan.fragments) != 1:
        coord.release(session)
        return None
    try:
        snap = coord.snapshot(session)
    except BaseException:
        coord.release(session)
        raise
    table = session.plan.fragments[0].table
    ok = sorted(session.pins)
    placement = coord._placed(snap.get(table, []), ok)
    ttl = coord.settings.pin_ttl
    body_schema = encode_schema(schema)
    out: list[tuple[str, bytes]] = []
    for nid in ok:
        files = placement.get(nid, [])
        rows = session.pins[nid]["tables"].get(table, {}).get("rows", 0)
        if rows == 0:  # nothing pinned there: free it now
            if nid == coord.node_id:
                coord.peer.release(session.query_id)
            else:
                coord._pool.submit(coord._quiet_action, session.nodes[nid].flight_uri, ACTION_RELEASE,
                                   session.query_id)
        if not files and not rows:
            continue
        body = {"q": session.query_id, "t": table, "sql": st.sql, "files": files, "pin": bool(rows),
                "schema": body_schema}
        out.append((_location(session.nodes[nid].flight_uri), coord.signer.sign(body, ttl)))
    if not out:  # an empty table: one endpoint, answered by any node
        body = {"q": session.query_id, "t": table, "sql": st.sql, "files": [], "pin": False, "schema": body_schema}
        out.append(("", coord.signer.sign(body, ttl)))
    coord.metrics.query_fragments.labels(role="coordinator").inc(len(out))
    return out


def _location(uri: str) -> str:
    return uri if "://" in uri else ""

"""The local-read shape: the coordinator reads every committed file itself.

Files live in the shared object store, so any node can read any of them; on small tables the
cost of a fan-out (a fragment call per peer, partial results, a merge statement) is larger than
the scan it spreads. When the files of the tables a query reads add up to less than
``coordinator.distribute_min_bytes``, each peer ships its buffered rows of those tables in its pin
answer (filtered by the statement's condition on the table, unread columns null, at most
``coordinator.inline_max_rows``), and the coordinator runs the original statement once, over the
snapshot's files plus its own pinned rows plus the shipped rows. The exactness rule is the fan-out's:
the pins come first, then the file snapshot leaves out files a pinned node committed after its pin.
A peer with more rows than that keeps its pin; the coordinator then runs the planned fragments
(every file at the coordinator, the shipped rows here too, a fragment call only to that peer).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from clients.errors import Unavailable

from ..query.engine import QueryResult, ResolvedTable
from ..schema import conform
from .peer import from_ipc


def shipped(s: Any, nid: str, table: str) -> pa.Table:
    """The rows of ``table`` node ``nid`` shipped with its pin (decoded once per query)."""
    key = (nid, table)
    got = s.shipped.get(key)
    if got is None:
        got = s.shipped[key] = from_ipc(s.pins[nid]["tables"][table]["inline"])
    return got


def direct(c: Any, s: Any, snap: dict[str, list[str]]) -> QueryResult:
    """Run the statement at the coordinator ``c`` over the snapshot ``snap`` (table -> keys), its own
    pinned rows and the rows every peer shipped."""
    names = {t.lower(): t for t in snap}
    buffers: dict[str, list[pa.Table]] = {}
    for t in snap:
        parts = []
        own = s.pins.get(c.node_id, {}).get("tables", {}).get(t)
        if own and own["rows"]:
            data = c.peer.pinned(s.query_id, t)
            if data is not None and data.num_rows:
                parts.append(data)
        for nid in sorted(s.pins):
            if nid != c.node_id and "inline" in s.pins[nid]["tables"].get(t, {}):
                data = shipped(s, nid, t)
                if data.num_rows:
                    parts.append(data)
        buffers[t] = parts

    def resolve(name: str, sets: list | None) -> ResolvedTable | None:
        table = names.get(name.lower())
        if table is None:
            return None
        rt = c.peer.resolver(table, sets, files=snap[table], include_buffer=False, manifest=s.manifests[table])
        # the newest manifest this node read: a snapshot file compacted away since is not read
        m = c.catalog.cached(table) or s.manifests[table]
        present = {f.key for f in m.files}
        gone = [k for k in snap[table] if k not in present]
        if rt is None or gone:
            if rt is not None:
                rt.release()
            raise Unavailable(f"{len(gone)} file(s) of {table!r} left the manifest during the query")
        parts = [conform(p, s.manifests[table].info.schema) for p in buffers[table]]
        if parts:
            rt.buffer = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
        return rt

    result = c.engine.execute(s.st, None, resolve)
    s.files = {c.node_id: dict(snap)}
    result.stats["shape"] = "local-read"
    return result

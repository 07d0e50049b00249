"""The collaborators the DML rewriter (``rewrite.py``, write path) gets from the composition
root, so that it imports neither the read path nor the coordinator:

* :func:`cluster_flush` - flush a table on this node and, in server mode, on every other live
  node (the ``flush`` Flight action, sent in parallel with the cluster's peer clients). A peer
  that cannot flush fails the statement (UNAVAILABLE): a DML that silently missed the rows
  buffered on one node would not be exact.
* :func:`where_constraints` - the literal constraints of ``SELECT * FROM t WHERE ...`` from
  DuckDB's parser (``query/analyze.py``), for pruning the files a DML reads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import duckdb
import orjson

from clients import protocol
from clients.errors import Unavailable

from .query.analyze import analyze, parse_tree
from .stats import Constraint

log = logging.getLogger("miniodb.dml")

PEER_FLUSH_TIMEOUT = 120.0


def cluster_flush(node: Any) -> Callable[[str], None]:
    """``flush(table)`` for the rewriter: local first, then every live peer."""

    def flush(table: str) -> None:
        node.flush(table)
        cluster = getattr(node, "cluster", None)
        if cluster is None or not cluster.distributed:
            return
        coordinator = cluster.coordinator
        live = coordinator.live() or []
        peers = [n for n in live if n.node_id != node.node_id and n.flight_uri and n.flight_uri != "local"]
        if not peers:
            return
        body = orjson.dumps({"table": table})

        def one(peer) -> None:
            try:
                coordinator.clients.action(peer.flight_uri, protocol.ACTION_FLUSH, body, PEER_FLUSH_TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - any failure: the peer's rows may be missed
                raise Unavailable(f"cannot flush table {table!r} on node {peer.node_id} before the change "
                                  f"(its buffered rows must be covered): {str(exc).splitlines()[0] if str(exc) else exc}"
                                  ) from exc

        with ThreadPoolExecutor(max_workers=min(8, len(peers)), thread_name_prefix="miniodb-dml-flush") as pool:
            for future in [pool.submit(one, p) for p in peers]:
                future.result()

    return flush


class WhereConstraints:
    """Constraint sets of ``SELECT * FROM t WHERE ...`` (None: the table cannot be pruned)."""

    def __init__(self) -> None:
        self._db = duckdb.connect(":memory:", config={"enable_external_access": False})
        self._lock = threading.Lock()

    def __call__(self, sql: str, table: str) -> list[list[Constraint]] | None:
        with self._lock:
            serialized = self._db.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0]
        tree = parse_tree(serialized)
        if tree.get("error"):
            return None
        ref = analyze(tree).tables.get(table.lower())
        if ref is None or ref.unconstrained or not ref.constraint_sets:
            return None
        return ref.constraint_sets


def where_constraints() -> WhereConstraints:
    return WhereConstraints()


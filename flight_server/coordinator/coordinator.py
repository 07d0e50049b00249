"""The coordinator: one SELECT over every live node, each acknowledged row counted once.

1. ``begin``: plan the statement (:mod:`.plan`); PIN every live node's buffered rows of the
   tables it reads with their watermarks (:mod:`.peer`), in parallel, itself included.
2. ``execute``: SNAPSHOT each table's committed files *after* the pins, leaving out files a
   pinned node committed after its pin (``wal_seq`` above its watermark: those rows are in
   its pin) and commits of unknown outcome it reported; PLACE the files on the pinned nodes
   by rendezvous hashing; run every fragment on every node that has files or pinned rows of
   its table (the coordinator always runs each, so every partial has its schema); a peer
   that fails or times out is dropped and its files are re-placed on the nodes left (the
   coordinator included): its pinned rows are missing, and the result says so
   (``x-miniodb-missing-nodes``, ``system.queries``); MERGE: the gathered partials are bound
   under the fragments' aliases and the merge SQL runs in this node's engine.
3. Pins are released when the partials are in (a TTL covers a coordinator that died).

Below ``coordinator.distribute_min_bytes`` of Parquet in the tables read, the local-read shape
(:mod:`.local_read`) replaces PLACE and the fan-out: the peers' buffered rows come with their
pins, and the coordinator runs the statement itself over every file.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from clients.errors import Cancelled, MinioDBError, NotFound

from ..metadata.base import NodeInfo, TableInfo
from ..query.engine import QueryResult, ResolvedTable
from ..query.statement import Statement, statement
from .cluster import ACTION_CANCEL, ACTION_PIN, ACTION_RELEASE, Signer, cancel_check, place
from .local_read import direct, shipped
from .params import bind_literals
from .plan import DistributedPlan, Fragment, plan

log = logging.getLogger("miniodb.coordinator")

LIVE_CACHE_SECONDS = 0.5  # the registry is read at most this often (a joining node is used within it)
CANCEL_POLL = 0.1  # seconds between checks of the client's call while waiting for peers
CANCEL_TIMEOUT = 2.0  # seconds a cancel or release to a dropped peer may take
SUSPECT_SECONDS = 5.0  # a node that just failed is not asked again for this long (reported missing)


@dataclass
class Session:
    query_id: str
    st: Statement
    plan: DistributedPlan
    nodes: dict[str, NodeInfo]  # every node asked to pin
    pins: dict[str, dict]  # node id -> its pin answer (nodes whose pin failed are absent)
    missing: set[str] = field(default_factory=set)  # nodes whose buffered rows are not in the answer
    missing_rows: int | None = 0  # None: unknown (a node that could not even pin)
    files: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # node -> table -> keys
    files_total: int = 0
    cancelled: Any = None  # the client's call: is_cancelled() (coordinator/cluster.py)
    local_read: bool = False  # the coordinator reads every file; peers ship buffered rows with their pin
    size: int = 0  # bytes of committed Parquet in the tables read (at plan time)
    shipped: dict = field(default_factory=dict)  # (node, table) -> decoded rows shipped with a pin
    manifests: dict = field(default_factory=dict)  # table -> Manifest: before the pins, then the snapshot's
    key_parts: Any = None  # the result cache's committed versions, read before the pins (query/runner.py)

    def signature(self) -> list:
        """What the answer depends on beyond the committed data versions (the cache key)."""
        return sorted([nid, p["inc"], sorted((t, d["gen"], d["v"]) for t, d in p["tables"].items())]
                      for nid, p in self.pins.items()) + [sorted(self.missing)]

    @property
    def buffered(self) -> bool:
        return any(d["rows"] for p in self.pins.values() for d in p["tables"].values())


class Coordinator:
    def __init__(self, node_id: str, settings: Any, catalog: Any, metadata: Any, engine: Any, peer: Any,
                 clients: Any, signer: Signer, metrics: Any):
        self.node_id = node_id
        self.settings = settings
        self.catalog = catalog
        self.metadata = metadata
        self.engine = engine
        self.peer = peer
        self.clients = clients
        self.signer = signer
        self.metrics = metrics
        self._pool = ThreadPoolExecutor(max_workers=max(2, settings.max_parallel), thread_name_prefix="miniodb-fanout")
        self._live: tuple[float, list[NodeInfo]] | None = None  # (monotonic time read, nodes)
        self._suspect: dict[str, float] = {}  # node id -> monotonic time until which it is not asked
        self._guard = threading.Lock()

    # -- which statements ----------------------------------------------------------------
    def live(self) -> list[NodeInfo] | None:
        """The live nodes with a Flight address (this one included), or None when alone."""
        now = time.monotonic()
        cached = self._live
        if cached is not None and now - cached[0] < LIVE_CACHE_SECONDS:
            nodes = list(cached[1])
        else:
            try:
                nodes = [n for n in self.metadata.live_nodes() if n.flight_uri]
            except MinioDBError as exc:
                log.warning("registry unavailable, answering locally: %s", exc.message)
                return None
            self._live = (now, nodes)
        if not any(n.node_id != self.node_id for n in nodes):
            return None
        if not any(n.node_id == self.node_id for n in nodes):
            nodes.append(NodeInfo(self.node_id, "local"))
        return nodes

    def begin(self, st: Statement, params: Any = None, local_read: bool = True) -> Session | None:
        """Plan and pin a distributable SELECT; None: run it locally as on one node. ``local_read``
        False: every node keeps its pinned rows and gets its share of the files (endpoints.py)."""
        if (st.kind != "SELECT" or st.analysis is None or st.analysis.qualified or not st.tables
                or st.analysis.at_refs):  # time travel reads committed files only: no buffers to gather
            return None
        if params:
            st = self._bound(st, params)
            if st is None:
                return None
        nodes = self.live()
        if nodes is None:
            return None
        schemas: dict[str, pa.Schema] = {}
        size = 0
        manifests = {}
        for m in self.catalog.manifests(list(st.tables)):
            if m is None:
                return None  # the local path reports NotFound
            schemas[m.info.name] = m.info.schema
            manifests[m.info.name] = m
            size += sum(f.size for f in m.files)
        p = plan(st.sql, schemas)
        if p.shape == "local" or not p.fragments:
            return None
        session = Session(uuid.uuid4().hex, st, p, {n.node_id: n for n in nodes}, {}, cancelled=cancel_check(),
                          local_read=local_read and size < self.settings.distribute_min_bytes and bool(p.rows),
                          size=size,
                          manifests=manifests)
        now = time.monotonic()
        with self._guard:
            skipped = {nid for nid, until in self._suspect.items() if until > now}
        for nid in sorted(skipped & set(session.nodes)):  # failed a moment ago: not asked, still reported
            session.missing.add(nid)
            session.missing_rows = None
        tables = sorted({f.table for f in p.fragments})
        inline = {t: p.rows[t] for t in tables if t in p.rows} if session.local_read else None
        futures = {n.node_id: self._pool.submit(self._pin, session.query_id, n, tables, inline)
                   for n in nodes if n.node_id not in session.missing and n.node_id != self.node_id}
        try:
            own: Future = Future()  # this node's pin runs here while the peers answer
            futures[self.node_id] = own
            own.set_result(self.peer.pin(session.query_id, tables, self.settings.pin_ttl,
                                         known=[manifests.get(t) for t in tables]))
            self._wait(session, list(futures.values()))
        except BaseException:
            for fut in futures.values():
                fut.cancel()
            self.release(session)
            raise
        for nid, fut in futures.items():
            try:
                session.pins[nid] = fut.result()
            except Exception as exc:  # noqa: BLE001 - a node that cannot pin is left out
                if nid == self.node_id:
                    self.release(session)
                    raise
                self._peer_failed(session, nid, exc, "pin")
        return session

    def _bound(self, st: Statement, params: Any) -> Statement | None:
        cur = self.engine.cursor()
        try:
            sql = bind_literals(st.sql, params, cur)
        except duckdb.Error:
            sql = None
        finally:
            cur.close()
        if sql is None:
            return None
        bound = statement(sql)
        return bound if bound.kind == "SELECT" and bound.analysis is not None else None

    def _pin(self, qid: str, node: NodeInfo, tables: list[str], inline: dict | None) -> dict:
        ttl = self.settings.pin_ttl
        if node.node_id == self.node_id:
            return self.peer.pin(qid, tables, ttl)
        body: dict[str, Any] = {"q": qid, "tables": tables, "ttl": ttl}
        if inline is not None:
            body.update(inline=inline, inline_rows=self.settings.inline_max_rows)
        started = time.perf_counter()
        try:
            return self.clients.action(node.flight_uri, ACTION_PIN, self.signer.sign(body, self.settings.peer_timeout),
                                       self.settings.peer_timeout)
        finally:
            self.metrics.peer_request.observe(time.perf_counter() - started)

    def _peer_failed(self, s: Session, nid: str, exc: BaseException, what: str) -> None:
        self.metrics.peer_failures.inc()
        log.warning("query %s: node %s dropped (%s failed: %s)", s.query_id, nid, what,
                    getattr(exc, "message", "") or str(exc) or type(exc).__name__)
        s.missing.add(nid)
        with self._guard:
            self._suspect[nid] = time.monotonic() + SUSPECT_SECONDS
        pin = s.pins.pop(nid, None)
        if pin is None:
            s.missing_rows = None
        elif s.missing_rows is not None:
            s.missing_rows += sum(d["rows"] for d in pin["tables"].values() if "inline" not in d)  # shipped: in
        uri = s.nodes[nid].flight_uri if nid in s.nodes else ""
        if uri and what == "fragment":  # a slow peer stops its fragments (and frees its pin)
            self._pool.submit(self._quiet_action, uri, ACTION_CANCEL, s.query_id, CANCEL_TIMEOUT)
            self._pool.submit(self._quiet_action, uri, ACTION_RELEASE, s.query_id, CANCEL_TIMEOUT)
        if uri:
            self.clients.drop(uri)

    def release(self, s: Session) -> None:
        for nid in list(s.nodes):
            if nid == self.node_id:
                self.peer.release(s.query_id)
            elif nid not in s.missing and s.pins.get(nid, {}).get("kept", True):
                self._pool.submit(self._quiet_action, s.nodes[nid].flight_uri, ACTION_RELEASE, s.query_id)

    def cancel(self, s: Session) -> None:
        for nid in list(s.pins):
            if nid != self.node_id and nid not in s.missing:
                self._pool.submit(self._quiet_action, s.nodes[nid].flight_uri, ACTION_CANCEL, s.query_id)

    def _quiet_action(self, uri: str, name: str, qid: str, timeout: float | None = None) -> None:
        try:
            self.clients.action(uri, name, self.signer.sign({"q": qid}, 60.0), timeout or self.settings.peer_timeout)
        except Exception as exc:  # noqa: BLE001 - the TTL ends the pin anyway
            log.debug("%s of %s on %s failed: %s", name, qid, uri, exc)

    # -- snapshot and placement ------------------------------------------------------------
    def snapshot(self, s: Session) -> dict[str, list[str]]:
        """Each table's committed files the answer reads (after the pins: see the module doc)."""
        out: dict[str, list[str]] = {}
        s.files_total = 0
        tables = sorted({f.table for f in s.plan.fragments})
        for table, m in zip(tables, self.catalog.manifests(tables), strict=True):
            if m is None:
                raise NotFound(f"table {table!r} not found", detail={"table": table})
            s.manifests[table] = m
            keys = []
            for f in m.files:
                pin = s.pins.get(f.node_id)
                t = pin["tables"].get(m.info.name) if pin is not None else None
                if t is not None and (f.key in t["hidden"] or (f.wal_seq and f.wal_seq > t["w"])):
                    continue  # its rows are in that node's pin
                keys.append(f.key)
            out[table] = keys
            s.files_total += len(m.files)
        return out

    @staticmethod
    def _placed(keys: list[str], node_ids: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {n: [] for n in node_ids}
        for k in keys:
            out[place(k, node_ids)].append(k)
        return out

    # -- fan-out ---------------------------------------------------------------------------
    def gather(self, s: Session, snap: dict[str, list[str]]) -> dict[str, pa.Table]:
        ok = sorted(s.pins)
        if s.local_read:  # every file here; a peer runs a fragment only for rows it did not ship
            placement = {t: {self.node_id: keys} for t, keys in snap.items()}
        else:
            placement = {t: self._placed(keys, ok) for t, keys in snap.items()}
        tasks: list[tuple] = []
        for frag in s.plan.fragments:
            for nid in ok:
                files = placement[frag.table].get(nid, [])
                pinned = s.pins[nid]["tables"].get(frag.table, {})
                rows = pinned.get("rows", 0)
                if "inline" in pinned:  # shipped with the pin: its fragment runs here over them
                    tasks.append((self.node_id, frag, [], False, shipped(s, nid, frag.table)))
                    rows = 0
                if nid == self.node_id or files or rows:
                    tasks.append((nid, frag, files, bool(rows), None))
                s.files.setdefault(nid, {})[frag.table] = files
        parts: dict[str, list[pa.Table]] = {f.alias: [] for f in s.plan.fragments}
        pending: dict[Future, tuple] = {}

        def submit(task):
            pending[self._pool.submit(self._run, s, *task)] = task

        for task in tasks:
            submit(task)
        try:
            while pending:
                done = self._wait(s, list(pending), FIRST_COMPLETED)
                for fut in done:
                    nid, frag, files, _pinned, _rows = pending.pop(fut)
                    try:
                        parts[frag.alias].append(fut.result())
                        continue
                    except Exception as exc:
                        if nid == self.node_id:
                            raise
                        if nid not in s.missing:
                            self._peer_failed(s, nid, exc, "fragment")
                    survivors = sorted(n for n in s.pins if n not in s.missing)
                    if files:
                        self.metrics.replanned_files.inc(len(files))
                        for n2, keys in self._placed(files, survivors).items():
                            if keys:
                                s.files.setdefault(n2, {}).setdefault(frag.table, []).extend(keys)
                                submit((n2, frag, keys, False, None))
        except BaseException:
            for fut in pending:
                fut.cancel()
            self.cancel(s)
            raise
        return {alias: _concat(tables) for alias, tables in parts.items()}

    @staticmethod
    def _wait(s: Session, futures: list[Future], when: str = ALL_COMPLETED) -> set[Future]:
        """Wait for peer calls, watching the client: raises Cancelled once it gave up."""
        while True:
            done, not_done = wait(futures, timeout=CANCEL_POLL, return_when=when)
            if (done and when == FIRST_COMPLETED) or not not_done:
                return done
            if s.cancelled is not None and s.cancelled():
                raise Cancelled("query cancelled by the client")

    def _run(self, s: Session, nid: str, frag: Fragment, files: list[str], pinned: bool,
             rows: pa.Table | None) -> pa.Table:
        body = {"q": s.query_id, "t": frag.table, "sql": frag.sql, "files": files, "pin": pinned}
        self.metrics.query_fragments.labels(role="coordinator").inc()
        if nid == self.node_id:
            return self.peer.fragment(body, rows)
        started = time.perf_counter()
        try:
            timeout = self.settings.peer_timeout
            return self.clients.fragment(s.nodes[nid].flight_uri, self.signer.sign(body, timeout), timeout)
        finally:
            self.metrics.peer_request.observe(time.perf_counter() - started)

    # -- merge -----------------------------------------------------------------------------
    def execute(self, s: Session) -> QueryResult:
        try:
            snap = self.snapshot(s)
            if s.local_read and all("inline" in d or not d["rows"] for nid, p in s.pins.items()
                                    if nid != self.node_id for d in p["tables"].values()):
                return self._stats(s, direct(self, s, snap))
            gathered = self.gather(s, snap)
        finally:
            self.release(s)
        merge = statement(s.plan.merge_sql)

        def resolve(name: str, sets: list | None) -> ResolvedTable | None:
            t = gathered.get(name.lower())
            if t is None:
                return None
            return ResolvedTable(name=name, columns=self._types(t.schema), paths=[], file_columns=set(), buffer=t)

        result = self.engine.execute(merge, None, resolve)
        scanned = sum(len(keys) for per in s.files.values() for keys in per.values())
        result.stats.update({"files_total": s.files_total, "files_scanned": scanned,
                             "files_pruned": s.files_total - scanned})
        return self._stats(s, result)

    @staticmethod
    def _stats(s: Session, result: QueryResult) -> QueryResult:
        result.stats.update({
            "buffer_rows": sum(d["rows"] for p in s.pins.values() for d in p["tables"].values()),
            # the nodes whose data is in the answer: pinned (their buffers) and never dropped
            "nodes": sorted(set(s.pins) - s.missing), "missing_nodes": sorted(s.missing),
            "missing_rows": s.missing_rows, "distributed": True})
        return result

    def _types(self, schema: pa.Schema) -> list[tuple[str, str]]:
        digest = hashlib.sha256(schema.serialize().to_pybytes()).hexdigest()
        return self.engine.duckdb_types(TableInfo("__partial", "partial:" + digest, schema))

    # -- EXPLAIN ---------------------------------------------------------------------------
    def explain(self, s: Session) -> pa.Table:
        """The distributed plan as (explain_key, explain_value) rows; pins are released."""
        try:
            snap = self.snapshot(s)
        finally:
            self.release(s)
        ok = sorted(s.pins)
        rows: list[tuple[str, str]] = [("shape", s.plan.shape), ("coordinator", self.node_id),
                                       ("nodes", ", ".join(ok))]
        if s.local_read:
            rows.append(("files", f"local-read: {s.size} bytes < coordinator.distribute_min_bytes, the coordinator "
                                  "reads every file; peers ship their buffered rows with their pin"))
        for f in s.plan.fragments:
            rows.append((f"fragment {f.alias}", f"table {f.table}: {f.sql}"))
        for table, keys in snap.items():
            placement = {n: (keys if n == self.node_id else []) for n in ok} if s.local_read else self._placed(keys, ok)
            for nid, placed in placement.items():
                pin = s.pins[nid]["tables"].get(table, {})
                rows.append((f"node {nid} / {table}", f"{len(placed)} file(s), {pin.get('rows', 0)} buffered row(s), "
                                                      f"watermark {pin.get('watermark', 0)}, file limit {pin.get('w', 0)}"))
        if s.missing:
            rows.append(("missing nodes", ", ".join(sorted(s.missing))))
        rows.append(("merge", s.plan.merge_sql))
        return pa.table({"explain_key": [r[0] for r in rows], "explain_value": [r[1] for r in rows]})

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.clients.close()


def _concat(tables: list[pa.Table]) -> pa.Table:
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="permissive")

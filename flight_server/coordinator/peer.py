"""The peer side of a distributed query: pins and fragments.

``pin``: for each table, this node's buffered rows (pending + flushing) and its persistence
watermark (the highest WAL sequence it committed for the table), taken together under the
table's commit lock, so a flush either happened before (its file has ``wal_seq <= W``) or
after (its file has ``wal_seq > W`` and the coordinator leaves it out: the rows are in the
pin). Commits whose outcome this node does not know (``Catalog.hide``) are reported too: their
rows are back in the buffer, so the coordinator must not read those files. The limit the
coordinator applies is ``min(W, oldest pinned sequence - 1)``: a flush that re-commits rows
of such an uncertain commit after the pin writes a file whose ``wal_seq`` may equal W, but it
always holds a pinned row, so its ``wal_seq`` reaches the oldest pinned sequence. Files
committed before the pin hold only rows older than every buffered one (a flush takes the
oldest rows; a failed one puts them back in front), so the limit never drops them. Pins live under
the query id until released or until their TTL.

``fragment``: run the fragment SQL with its table bound to the assigned files plus, if the
ticket says so, this node's pinned rows; the answer is one Arrow table.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from clients.errors import Cancelled, NotFound, Unavailable

from ..buffer import BufferManager
from ..catalog import Catalog
from ..metadata.base import MetadataStore
from ..query.engine import QueryEngine
from ..query.runner import buffer_generation
from ..schema import conform

log = logging.getLogger("miniodb.coordinator")


def to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def from_ipc(data: str) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(base64.b64decode(data))).read_all()


@dataclass
class _Pin:
    rows: dict[str, pa.Table | None]
    expires: float


class PeerService:
    def __init__(self, node_id: str, catalog: Catalog, metadata: MetadataStore, buffers: BufferManager,
                 engine: QueryEngine, resolver: Any, clock=time.monotonic):
        self.node_id = node_id
        self.incarnation = uuid.uuid4().hex  # buffer generations are unique within one process only
        self.catalog = catalog
        self.metadata = metadata
        self.buffers = buffers
        self.engine = engine
        self.resolver = resolver
        self._clock = clock
        self._pins: dict[str, _Pin] = {}
        self._running: dict[str, list] = {}  # query id -> interrupt hooks of its running fragments
        self._cancelled: dict[str, float] = {}
        self._lock = threading.Lock()

    # -- pins --------------------------------------------------------------------------
    def pin(self, query_id: str, tables: Sequence[str], ttl: float, inline: dict | None = None,
            inline_rows: int = 0, known: list | None = None) -> dict:
        """Pin the buffered rows of ``tables``. With ``inline`` (table -> {columns, where}: the
        local-read shape), a table's pinned rows up to ``inline_rows`` travel in the answer
        (filtered, the unread columns null; ``inline`` of the table: Arrow IPC, base64); the pin is
        kept only when some rows did not (``kept``), as a fragment call will read them. ``known``:
        the tables' manifests the caller (this node's coordinator) read just before."""
        self._expire()
        out: dict[str, dict] = {}
        rows: dict[str, pa.Table | None] = {}
        if known is None or None in known:
            known = self.catalog.manifests(list(tables))
        for m in known:
            if m is None:
                continue
            info = m.info
            with self.buffers.commit_lock(info.name):
                watermark = self.metadata.get_watermark(self.node_id, info.table_id)
                hidden = sorted(getattr(self.catalog, "_hidden", {}).get(info.name, ()))
                gen = version = 0
                data = None
                limit = watermark
                with self.buffers.lock:
                    buf = self.buffers.get(info.name)
                    if buf is not None and buf.table_id == info.table_id and buf.rows:
                        data = buf.visible()
                        gen, version = buffer_generation(buf), buf.version
                        limit = min(watermark, min(buf.seqs()) - 1)
            if data is not None and not data.schema.equals(info.schema):
                data = conform(data, info.schema)
            rows[info.name.lower()] = data
            out[info.name] = {"w": limit, "watermark": watermark, "rows": data.num_rows if data is not None else 0,
                              "hidden": hidden, "gen": gen, "v": version, "table_id": info.table_id}
        keep = inline is None
        for name, entry in out.items():
            data = rows[name.lower()]
            if data is None or not data.num_rows or keep:
                continue
            spec = inline.get(name)
            if spec is None or data.num_rows > inline_rows:
                keep = True
                continue
            entry["inline"] = base64.b64encode(to_ipc(self._shipped(data, spec))).decode()
        if keep:
            with self._lock:
                self._pins[query_id] = _Pin(rows, self._clock() + ttl)
        return {"node": self.node_id, "inc": self.incarnation, "tables": out, "kept": keep}

    def _shipped(self, data: pa.Table, spec: dict) -> pa.Table:
        """``data`` filtered by the statement's condition on the table (when DuckDB can evaluate it
        here; else unfiltered, which is as exact), the columns it never reads replaced by nulls."""
        where = spec.get("where")
        if where and not any(pa.types.is_duration(f.type) for f in data.schema):
            cur = self.engine.cursor()
            try:
                cur.register("__miniodb_inline", data.append_column("__miniodb_i", pa.array(np.arange(data.num_rows))))
                keep = cur.sql(f"SELECT __miniodb_i FROM __miniodb_inline WHERE {where}").to_arrow_table()
                data = data.take(np.sort(keep.column(0).to_numpy()))
            except Exception:  # noqa: BLE001 - the merge applies the condition anyway
                log.debug("inline filter %r not applied", where, exc_info=True)
            finally:
                cur.close()
        wanted = {c.lower() for c in spec.get("columns") or ()}
        return pa.Table.from_arrays([col if f.name.lower() in wanted else pa.nulls(data.num_rows, f.type)
                                     for f, col in zip(data.schema, data.columns, strict=True)], schema=data.schema)

    def release(self, query_id: str) -> dict:
        with self._lock:
            found = self._pins.pop(query_id, None) is not None
        return {"released": found}

    def pinned(self, query_id: str, table: str) -> pa.Table | None:
        with self._lock:
            pin = self._pins.get(query_id)
        if pin is None:
            raise NotFound(f"no pinned rows for query {query_id} (expired or released)")
        return pin.rows.get(table.lower())

    def _expire(self) -> None:
        now = self._clock()
        with self._lock:
            for qid in [q for q, p in self._pins.items() if p.expires < now]:
                del self._pins[qid]
            for qid in [q for q, t in self._cancelled.items() if t < now]:
                del self._cancelled[qid]

    # -- fragments ---------------------------------------------------------------------
    def cancel(self, query_id: str) -> dict:
        with self._lock:
            hooks = list(self._running.get(query_id, ()))
            self._cancelled[query_id] = self._clock() + 600
        for hook in hooks:
            hook()
        return {"cancelled": len(hooks)}

    def fragment(self, body: dict, rows: pa.Table | None = None) -> pa.Table:
        """Run one fragment: ``body`` = {q, t (table), sql, files, pin (use my pinned rows)}; ``rows``
        (the coordinator only): a peer's rows shipped with its pin instead."""
        qid, table, files = str(body["q"]), str(body["t"]), [str(k) for k in body.get("files") or ()]
        buffer = rows if rows is not None else self.pinned(qid, table) if body.get("pin") else None
        if files:
            m = self.catalog.manifest(table)
            present = {f.key for f in m.files} if m is not None else set()
            gone = [k for k in files if k not in present]
            if gone:
                raise Unavailable(f"{len(gone)} file(s) of {table!r} left the manifest during the query")

        def resolve(name: str, sets: list | None):
            if name.lower() != table.lower():
                return None
            rt = self.resolver(name, sets, files=files, include_buffer=False)
            if rt is not None and buffer is not None:
                rt.buffer = buffer
            return rt

        with self._lock:
            if qid in self._cancelled:
                raise Cancelled("query cancelled")
        result = self.engine.execute(str(body["sql"]), None, resolve)
        with self._lock:
            self._running.setdefault(qid, []).append(result.interrupt)
        try:
            return result.source.read_all()
        finally:
            with self._lock:
                hooks = self._running.get(qid, [])
                if result.interrupt in hooks:
                    hooks.remove(result.interrupt)
                if not hooks:
                    self._running.pop(qid, None)
            result.close()

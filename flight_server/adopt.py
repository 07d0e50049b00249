"""Adoption of a dead node's mirrored WAL (``wal.mirror: object_store``, server mode).

A node that has sent no heartbeat for ``metadata.node_ttl`` (it is gone from ``live_nodes``)
may have acknowledged rows that exist only in its WAL, which the mirror (wal_mirror.py) also
keeps in the object store. A live node then:

1. takes the Redis lease ``{prefix}:walmirror:lease:{dead}`` (SET NX PX; renewed while it
   works; only one adopter), and checks that the node is still not live;
2. reads the node's mirrored segments and groups them by table incarnation;
3. skips the segments at or below the dead node's watermark for that table: they are
   persisted already;
4. writes the others as one Parquet file and commits it with
   ``commit_files(table, table_id, [entry], watermark=(dead, max_seq))``: the watermark the
   dead node's own flush would have set, so the commit and the "adopted" mark are one
   atomic step;
5. deletes the mirrored objects once every table is settled, then releases the lease.

An adopter that crashes midway loses its lease when it expires; the next adopter skips what
the watermarks already cover. A table dropped meanwhile is skipped and its segments deleted.

The node itself, when it starts again, takes the same lease before it touches its WAL (so it
never replays while an adopter works), restores mirrored segments its disk lacks, numbers new
segments above every watermark it has (a replaced disk would otherwise reuse sequence numbers
that replay then skips), and releases the lease once its heartbeat is registered. Replay
skips what was adopted because adoption moved the watermark.

Limit: a node that is alive but cut off from Redis for longer than ``node_ttl`` looks dead;
if it is adopted and, once Redis answers again, flushes the same rows itself, they are
committed twice. Closing that needs a fence in the flush commit (refuse a commit whose
oldest segment is at or below the node's stored watermark, and drop those rows instead),
which belongs to persist.py and the metadata commit script, not here.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import redis

from clients.errors import MinioDBError, NotFound, Unavailable

from .catalog import Catalog
from .config import Settings
from .ingest import complete_batches
from .metadata.base import FileEntry, MetadataStore, WatermarkFenced
from .metadata.redis import RedisMetadataStore
from .paths import data_file_key, parse_wal_mirror_key, wal_mirror_prefix
from .persist import write_table_file
from .schema import conform
from .stats import column_stats
from .storage.base import ObjectStore
from .wal import Segment, WriteAheadLog, parse_segment
from .wal_mirror import WalMirror, unpack_mirror_object

log = logging.getLogger("miniodb.adopt")

_RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class RedisLease:
    """An exclusive, expiring lease: SET NX PX, renewed and released only by its holder."""

    def __init__(self, client: redis.Redis, key: str, owner: str, ttl: float):
        self.client, self.key, self.ttl = client, key, ttl
        self.token = f"{owner}:{uuid.uuid4().hex}"
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False

    def _call(self, what: str, fn: Callable[[], object]) -> object:
        try:
            return fn()
        except redis.RedisError as exc:
            raise Unavailable(f"lease {self.key!r}: could not {what}: {exc}") from exc

    def acquire(self) -> bool:
        ok = self._call("acquire", lambda: self.client.set(self.key, self.token, nx=True, px=int(self.ttl * 1000)))
        if ok:
            self._stop.clear()
            self.lost = False
            self._thread = threading.Thread(target=self._keep, name="miniodb-lease", daemon=True)
            self._thread.start()
        return bool(ok)

    def renew(self) -> bool:
        """Extend the lease; False if it expired or someone else holds it."""
        held = bool(self._call("renew", lambda: self._renew(keys=[self.key], args=[self.token, int(self.ttl * 1000)])))
        self.lost = self.lost or not held
        return held and not self.lost

    def _keep(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                if not self.renew():
                    log.warning("lease %s lost", self.key)
                    return
            except Unavailable as exc:
                log.warning("%s", exc)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self._call("release", lambda: self._release(keys=[self.key], args=[self.token]))
        except Unavailable as exc:  # it expires on its own
            log.warning("%s", exc)


class WalAdopter:
    """Finds dead nodes' mirrored WAL and flushes it into the tables on their behalf."""

    def __init__(self, node_id: str, metadata: RedisMetadataStore, catalog: Catalog, store: ObjectStore,
                 node_ttl: float, tmp_dir: str | Path, clock: Callable[[], float] = time.time):
        self.node_id = node_id
        self.metadata = metadata
        self.catalog = catalog
        self.store = store
        self.lease_seconds = max(1.0, float(node_ttl))
        self.interval = max(0.5, float(node_ttl) / 3)
        self.tmp_dir = Path(tmp_dir)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._own: RedisLease | None = None
        self.adopted_rows = 0

    def lease(self, node_id: str) -> RedisLease:
        return RedisLease(self.metadata.client, f"{self.metadata.prefix}:walmirror:lease:{node_id}",
                          self.node_id, self.lease_seconds)

    # -- this node's own WAL -----------------------------------------------------------
    def claim_own(self) -> None:
        """Wait until no adopter works on this node's WAL, and keep others out until
        :meth:`start` (called once this node's heartbeat is registered)."""
        self._own = self.lease(self.node_id)
        if self._own.acquire():
            return
        log.warning("another node is adopting this node's WAL; waiting for it to finish")
        while not self._own.acquire():
            time.sleep(0.2)

    def start(self) -> WalAdopter:
        if self._own is not None:
            self._own.release()
            self._own = None
        self._thread = threading.Thread(target=self._run, name="miniodb-adopter", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        if self._own is not None:
            self._own.release()

    # -- adoption ----------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.scan_once()
            except MinioDBError as exc:
                log.warning("WAL adoption scan failed: %s", exc)
            except Exception:  # noqa: BLE001 - keep the thread alive
                log.exception("WAL adoption scan failed")

    def scan_once(self) -> int:
        """Adopt the mirrored WAL of every node that is not live; returns rows adopted."""
        owners = set()
        for obj in self.store.list(wal_mirror_prefix()):
            parsed = parse_wal_mirror_key(obj.key)
            if parsed is not None:
                owners.add(parsed[0])
        owners.discard(self.node_id)
        if not owners:
            return 0
        owners -= {n.node_id for n in self.metadata.live_nodes()}
        rows = 0
        for dead in sorted(owners):
            if self._stop.is_set():
                break
            rows += self.adopt(dead)
        return rows

    def adopt(self, dead: str) -> int:
        lease = self.lease(dead)
        if not lease.acquire():
            return 0  # another node (or the node itself, restarting) is on it
        try:
            if dead in {n.node_id for n in self.metadata.live_nodes()}:
                return 0
            found: list[tuple[Segment, pa.Table]] = []
            keys = []
            for obj in self.store.list(wal_mirror_prefix(dead)):
                parsed = parse_wal_mirror_key(obj.key)
                if parsed is None or parsed[0] != dead:
                    continue
                try:
                    parts = unpack_mirror_object(obj.key, self.store.get_bytes(obj.key))
                except NotFound:
                    continue  # deleted meanwhile
                keys.append(obj.key)
                for seq, raw in parts:
                    try:
                        found.append(parse_segment(seq, raw))
                    except (pa.ArrowInvalid, OSError):
                        # never an acknowledged segment: those are uploaded whole before the ack
                        # and their files stay untouched until persisted (this was a persisted one)
                        continue
            # all-or-nothing batches (exactly-once ids): only whole ones, as replay does; an
            # incomplete one was never acknowledged, and its retry applies it whole
            complete = complete_batches([seg for seg, _ in found])
            groups: dict[tuple[str, str], list[tuple[int, pa.Table, str]]] = defaultdict(list)
            for seg, data in found:
                if seg.batch_part and seg.batch_id not in complete:
                    continue
                groups[(seg.table, seg.table_id)].append((seg.seq, data, seg.batch_id))
            rows = 0
            for (table, table_id), items in sorted(groups.items()):
                rows += self._adopt_table(dead, table, table_id, sorted(items, key=lambda i: i[0]), lease)
            if lease.renew():  # every table is settled (a failure above raised: kept for the next try)
                self._delete(keys)
            if rows:
                log.warning("adopted %d unflushed rows of dead node %s from its mirrored WAL", rows, dead)
            self.adopted_rows += rows
            return rows
        finally:
            lease.release()

    def _adopt_table(self, dead: str, table: str, table_id: str, items: list, lease: RedisLease) -> int:
        """Commit one table's segments (those above the watermark); returns rows committed."""
        info = self.catalog.find(table) if table else None
        if info is None or info.table_id != table_id:
            if not table or self.metadata.was_dropped(table_id):
                return 0  # the table was dropped: its rows must not come back
            raise Unavailable(f"table {table!r} ({table_id}) of node {dead!r}'s mirrored WAL is unknown to the "
                              "metadata store and was never dropped: its rows are kept until the metadata "
                              "is restored")
        watermark = self.metadata.get_watermark(dead, table_id)
        fresh = [(seq, data, batch_id) for seq, data, batch_id in items if seq > watermark]
        if not fresh:
            return 0
        data = pa.concat_tables([conform(d, info.schema) for _, d, _ in fresh])
        ids: dict[str, int] = {}  # the dead node's batch ids, recorded with the file as its own flush would
        for _, d, batch_id in fresh:
            if batch_id:
                ids[batch_id] = ids.get(batch_id, 0) + d.num_rows
        tmp = self.tmp_dir / f"adopt-{uuid.uuid4().hex}.parquet"
        key = None
        committing = False
        try:
            data = write_table_file(data, tmp, info)
            mins, maxs = column_stats(data)
            seq = self.metadata.next_sequence(f"file:{dead}")
            key = data_file_key(table, _day(data, info.time_column), dead, seq)
            size = self.store.put_file(key, tmp)
            entry = FileEntry(key=key, rows=data.num_rows, size=size, min_values=mins, max_values=maxs,
                              node_id=dead, created_at=self._clock(), columns=tuple(info.schema.names))
            if not lease.renew():
                raise Unavailable(f"lost the adoption lease of node {dead!r} before committing")
            committing = True
            try:  # fenced: the node itself (alive after all) flushed some of these rows meanwhile
                self.metadata.commit_files(table, table_id, [entry], watermark=(dead, max(s for s, _, _ in fresh)),
                                           since=min(s for s, _, _ in fresh), batches=ids, operation="adopt")
            except (NotFound, WatermarkFenced):  # dropped while adopting, or committed by the node:
                committing = False               # nothing written; the next round looks again
                self._delete([key])
                return 0
        except BaseException:
            if key and not committing:
                self._delete([key])  # never committed; a commit whose reply was lost may have
            raise                    # landed: then its object stays and the watermark moved
        finally:
            tmp.unlink(missing_ok=True)
        self.catalog.invalidate(table)
        return data.num_rows

    def _delete(self, keys: list[str]) -> None:
        if keys:
            try:
                self.store.delete_many(keys)
            except MinioDBError as exc:  # skipped by the watermark next time, deleted then
                log.warning("could not delete %d mirrored WAL objects: %s", len(keys), exc)


def _day(data: pa.Table, time_column: str | None) -> dt.date:
    """The partition date of adopted rows: their earliest time, else today."""
    if time_column and time_column in data.column_names:
        try:
            first = pc.min(data[time_column]).as_py()
            if isinstance(first, dt.datetime):
                return first.date()
            if isinstance(first, dt.date):
                return first
        except (ValueError, OverflowError, pa.ArrowException):
            pass
    return dt.datetime.now(dt.UTC).date()


def raise_wal_floor(wal: WriteAheadLog, metadata: MetadataStore, catalog: Catalog, node_id: str) -> None:
    """Number new segments above every watermark of this node: a replaced (empty) disk would
    otherwise start again at 1, and replay and adoption would skip those segments."""
    top = 0
    for info in catalog.list():
        top = max(top, metadata.get_watermark(node_id, info.table_id))
    wal.raise_floor(top)


def open_wal_mirror(settings: Settings, node_id: str, store: ObjectStore, metadata: MetadataStore,
                    catalog: Catalog, wal: WriteAheadLog) -> tuple[WalMirror | None, WalAdopter | None]:
    """Before replay: the mirror (reconciled and hooked into ``wal``) and, in server mode, the
    adopter holding this node's own lease until :meth:`WalAdopter.start`."""
    if settings.wal.mirror != "object_store":
        return None, None
    adopter = None
    if isinstance(metadata, RedisMetadataStore):
        adopter = WalAdopter(node_id, metadata, catalog, store, settings.metadata.node_ttl,
                             settings.data_dir / "tmp")
        adopter.claim_own()
    mirror = WalMirror(store, node_id)
    mirror.reconcile(wal)
    raise_wal_floor(wal, metadata, catalog, node_id)
    return mirror.attach(wal), adopter

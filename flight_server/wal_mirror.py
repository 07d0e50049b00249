"""WAL mirror (``wal.mirror: object_store``): every WAL segment is also an object,
``_wal/{node_id}/{seq:020d}.arrow`` (the segment file's exact bytes), before its ingest is
acknowledged. A node whose disk is lost therefore loses no acknowledged row: another node
adopts the mirrored segments (adopt.py), or the node itself restores them when it comes back.

Group commit: the WAL calls :meth:`WalMirror.mirror` once a segment is durable on the local
disk, and that call waits. One mirror thread takes every segment waiting at that moment and
uploads them together (in parallel), then releases all their writers. Concurrent ingests that
arrive while a round is in flight share the next round, so a round never waits on purpose:
a writer waits for at most the round in flight plus its own (one upload time each).

A failed upload is retried for ``retry_seconds``; if it still fails the ingest gets
``Unavailable``. Its rows are already in the local WAL and the buffer (the rename there is
the local commit point), so they are kept and persisted like any other: a client that
retries such a batch should send a batch id.

Mirror objects are deleted when the WAL removes their segments (after the durable commit
of a flush, for a dropped table, or for segments replay found already persisted). A segment
removed before its upload started is not uploaded at all (it is persisted: nothing to
protect); one removed during its upload is deleted right after it.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from clients.errors import MinioDBError, Unavailable

from .paths import parse_wal_mirror_key, wal_mirror_key, wal_mirror_prefix
from .storage.base import ObjectStore
from .wal import Segment, WriteAheadLog

log = logging.getLogger("miniodb.wal_mirror")


@dataclass(eq=False)
class _Pending:
    segment: Segment
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    skip: bool = False  # removed (persisted) before its upload started


class WalMirror:
    def __init__(self, store: ObjectStore, node_id: str, workers: int = 8, retry_seconds: float = 5.0):
        self.store = store
        self.node_id = node_id
        self.retry_seconds = retry_seconds
        self._cond = threading.Condition()
        self._queue: dict[int, _Pending] = {}  # seq -> waiting for the next round
        self._inflight: set[int] = set()
        self._removed_inflight: set[int] = set()
        self._stopped = False
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="miniodb-mirror-put")
        self._thread: threading.Thread | None = None
        self.rounds = 0
        self.uploaded = 0

    @property
    def waiting(self) -> int:
        """Segments waiting for the next upload round."""
        with self._cond:
            return len(self._queue)

    # -- lifecycle ---------------------------------------------------------------------
    def attach(self, wal: WriteAheadLog) -> WalMirror:
        """Hook into ``wal`` and start the mirror thread."""
        wal.on_durable = self.mirror
        wal.on_removed = self.removed
        self._thread = threading.Thread(target=self._run, name="miniodb-wal-mirror", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=60)
        self._pool.shutdown(wait=True)

    # -- start-up: local WAL <-> mirror ------------------------------------------------
    def reconcile(self, wal: WriteAheadLog) -> tuple[int, int]:
        """Before replay: download mirrored segments missing from the local WAL (a new or
        replaced disk) and upload local segments missing from the mirror (the mirror was off,
        or an upload failed). Returns (restored, uploaded)."""
        mirrored = {}
        for obj in self.store.list(wal_mirror_prefix(self.node_id)):
            parsed = parse_wal_mirror_key(obj.key)
            if parsed is not None and parsed[0] == self.node_id:
                mirrored[parsed[1]] = obj.key
        local = {seg.seq: seg for seg in wal.segments()}
        restored = 0
        for seq in sorted(set(mirrored) - set(local)):
            self.store.get_to_file(mirrored[seq], wal.segment_path(seq))
            wal.raise_floor(seq)
            restored += 1
        uploaded = 0
        for seq in sorted(set(local) - set(mirrored)):
            self.store.put_file(wal_mirror_key(self.node_id, seq), local[seq].path)
            uploaded += 1
        if restored or uploaded:
            log.info("WAL mirror: %d segments restored from the object store, %d uploaded", restored, uploaded)
        return restored, uploaded

    # -- WAL hooks ---------------------------------------------------------------------
    def mirror(self, segment: Segment) -> None:
        """Block until ``segment`` is in the object store (WAL ``on_durable`` hook)."""
        pending = _Pending(segment)
        with self._cond:
            if self._stopped:
                raise Unavailable("the node is stopping; the WAL mirror takes no new segments")
            self._queue[segment.seq] = pending
            self._cond.notify_all()
        pending.done.wait()
        if pending.error is not None:
            raise Unavailable(f"WAL segment {segment.seq} could not be mirrored to the object store "
                              f"({pending.error}); the rows are in this node's WAL") from pending.error

    def removed(self, seqs: list[int]) -> None:
        """Segments left the WAL: their mirror objects go too (WAL ``on_removed`` hook)."""
        keys = []
        with self._cond:
            for seq in seqs:
                pending = self._queue.get(seq)
                if pending is not None:
                    pending.skip = True
                elif seq in self._inflight:
                    self._removed_inflight.add(seq)
                else:
                    keys.append(wal_mirror_key(self.node_id, seq))
        self._delete(keys)

    def _delete(self, keys: list[str]) -> None:
        if not keys:
            return
        try:
            self.store.delete_many(keys)
        except MinioDBError as exc:  # an orphan is skipped by its watermark and deleted later
            log.warning("could not delete %d mirrored WAL segments: %s", len(keys), exc)

    # -- the mirror thread -------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopped:
                    self._cond.wait()
                if not self._queue:
                    return
                batch = list(self._queue.values())
                self._queue.clear()
                todo = [p for p in batch if not p.skip]
                self._inflight.update(p.segment.seq for p in todo)
            futures = [self._pool.submit(self._put, p.segment) for p in todo]
            for p, f in zip(todo, futures, strict=True):
                p.error = f.exception()
            seqs = {p.segment.seq for p in todo}
            with self._cond:
                late = self._removed_inflight & seqs
                self._removed_inflight -= late
                self._inflight -= seqs
            self._delete([wal_mirror_key(self.node_id, s) for s in sorted(late)])
            for p in todo:
                if p.segment.seq in late:
                    p.error = None  # persisted while uploading (its file may be gone): durable
            self.rounds += 1
            self.uploaded += len(todo)
            for p in batch:
                p.done.set()

    def _put(self, segment: Segment) -> None:
        key = wal_mirror_key(self.node_id, segment.seq)
        for attempt in Retrying(retry=retry_if_exception_type(Unavailable), reraise=True,
                                stop=stop_after_delay(self.retry_seconds),
                                wait=wait_exponential(multiplier=0.05, max=1.0)):
            with attempt:
                self.store.put_file(key, segment.path)

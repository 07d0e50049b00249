"""WAL mirror (``wal.mirror: object_store``): every WAL segment is also in the object store
before its ingest is acknowledged. A node whose disk is lost therefore loses no acknowledged
row: another node adopts the mirrored segments (adopt.py), or the node itself restores them
when it comes back.

Group commit: the WAL hands a segment over when it is published (:meth:`WalMirror.submit`,
so the upload overlaps the local directory sync) and waits for it once the segment is durable
on the local disk (:meth:`WalMirror.wait`). One mirror thread takes every segment waiting at that moment and
uploads them as one round, then releases all their writers. Concurrent ingests that arrive
while a round is in flight share the next round, so a round never waits on purpose: a writer
waits for at most the round in flight plus its own.

A round's small segments travel together as one *bundle* object
(``_wal/{node}/{first}-{last}.bundle``: a magic, then per segment its sequence, its length
and its bytes), up to ``BUNDLE_BYTES``: one PUT (and, on a local folder, one fsync) for many
ingests. A segment of ``BUNDLE_BYTES`` or more, or one alone in its round, is uploaded as
its own file (``_wal/{node}/{seq}.arrow``, the segment's exact bytes).

A failed upload is retried for ``retry_seconds``; if it still fails the ingest gets
``Unavailable``. Its rows are already in the local WAL and the buffer (the rename there is
the local commit point), so they are kept and persisted like any other: a client that
retries such a batch should send a batch id.

An object is deleted once the WAL has removed every segment in it (after the durable commit
of a flush, for a dropped table, or for segments replay found already persisted). A segment
removed before its upload started is not uploaded (it is persisted: nothing to protect); one
removed during its upload is forgotten right after it (its bytes in a bundle may be garbage:
a recycled WAL file is overwritten in place; readers skip what they cannot parse).
"""

from __future__ import annotations

import logging
import os
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from clients.errors import MinioDBError, Unavailable

from .paths import (
    is_wal_mirror_bundle,
    parse_wal_mirror_key,
    wal_mirror_bundle_key,
    wal_mirror_key,
    wal_mirror_prefix,
)
from .storage.base import ObjectStore
from .wal import Segment, WriteAheadLog

log = logging.getLogger("miniodb.wal_mirror")

BUNDLE_MAGIC = b"MDBWALB1"
BUNDLE_BYTES = 16 * 1024 * 1024
_FRAME = struct.Struct("<QQ")  # sequence, length


def pack_bundle(parts: list[tuple[int, bytes]]) -> bytes:
    out = [BUNDLE_MAGIC]
    for seq, data in parts:
        out += [_FRAME.pack(seq, len(data)), data]
    return b"".join(out)


def unpack_mirror_object(key: str, data: bytes) -> list[tuple[int, bytes]]:
    """The (sequence, segment bytes) in one mirror object; a truncated tail is dropped."""
    parsed = parse_wal_mirror_key(key)
    if parsed is None:
        return []
    if not is_wal_mirror_bundle(key):
        return [(parsed[1], data)]
    if not data.startswith(BUNDLE_MAGIC):
        return []
    parts = []
    pos = len(BUNDLE_MAGIC)
    view = memoryview(data)
    while pos + _FRAME.size <= len(data):
        seq, size = _FRAME.unpack_from(data, pos)
        pos += _FRAME.size
        if pos + size > len(data):
            break
        parts.append((seq, bytes(view[pos:pos + size])))
        pos += size
    return parts


@dataclass(eq=False)
class _Pending:
    segment: Segment
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    skip: bool = False  # removed (persisted) before its upload started


class WalMirror:
    def __init__(self, store: ObjectStore, node_id: str, workers: int = 4, retry_seconds: float = 5.0):
        self.store = store
        self.node_id = node_id
        self.retry_seconds = retry_seconds
        self._cond = threading.Condition()
        self._queue: dict[int, _Pending] = {}  # seq -> waiting for the next round
        self._waiters: dict[int, _Pending] = {}  # seq -> submitted, its writer not yet waiting
        self._inflight: set[int] = set()
        self._removed_inflight: set[int] = set()
        self._object_of: dict[int, str] = {}  # seq -> mirror object holding it
        self._live: dict[str, set[int]] = {}  # mirror object -> its segments still in the WAL
        self._stopped = False
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="miniodb-mirror-put")
        self._thread: threading.Thread | None = None
        self.rounds = 0
        self.uploaded = 0  # segments
        self.objects = 0  # PUTs

    @property
    def waiting(self) -> int:
        """Segments waiting for the next upload round."""
        with self._cond:
            return len(self._queue)

    # -- lifecycle ---------------------------------------------------------------------
    def attach(self, wal: WriteAheadLog) -> WalMirror:
        """Hook into ``wal`` and start the mirror thread."""
        wal.on_published = self.submit
        wal.on_durable = self.wait
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
        """Before replay: restore mirrored segments missing from the local WAL (a new or
        replaced disk), upload local segments missing from the mirror (the mirror was off,
        or an upload failed), and learn which object holds which segment. Returns (restored,
        uploaded)."""
        local = {seg.seq: seg for seg in wal.segments()}
        restored = 0
        for obj in list(self.store.list(wal_mirror_prefix(self.node_id))):
            parsed = parse_wal_mirror_key(obj.key)
            if parsed is None or parsed[0] != self.node_id:
                continue
            if is_wal_mirror_bundle(obj.key):
                parts = unpack_mirror_object(obj.key, self.store.get_bytes(obj.key))
                for seq, data in parts:
                    if seq not in local:
                        _write_durably(wal.segment_path(seq), data)
                        wal.raise_floor(seq)
                        restored += 1
                seqs = {seq for seq, _ in parts}
            else:
                seq = parsed[1]
                if seq not in local:
                    self.store.get_to_file(obj.key, wal.segment_path(seq))
                    wal.raise_floor(seq)
                    restored += 1
                seqs = {seq}
            self._track(obj.key, seqs)
        missing = [seg for seq, seg in sorted(local.items()) if seq not in self._object_of]
        for group in _groups(missing):
            self._upload(group)
        if restored or missing:
            log.info("WAL mirror: %d segments restored from the object store, %d uploaded", restored, len(missing))
        return restored, len(missing)

    def _track(self, key: str, seqs: set[int]) -> None:
        if not seqs:
            self._delete([key])
            return
        with self._cond:
            self._live[key] = set(seqs)
            for seq in seqs:
                self._object_of[seq] = key

    # -- WAL hooks ---------------------------------------------------------------------
    def submit(self, segment: Segment) -> None:
        """Queue ``segment`` for the next round (WAL ``on_published`` hook: the upload overlaps
        the local directory sync; never blocks)."""
        with self._cond:
            if self._stopped or segment.seq in self._waiters:
                return  # wait() reports the stop
            pending = _Pending(segment)
            self._waiters[segment.seq] = pending
            self._queue[segment.seq] = pending
            self._cond.notify_all()

    def wait(self, segment: Segment) -> None:
        """Block until ``segment`` is in the object store (WAL ``on_durable`` hook)."""
        self.submit(segment)
        with self._cond:
            pending = self._waiters.pop(segment.seq, None)
        if pending is None:
            raise Unavailable("the node is stopping; the WAL mirror takes no new segments")
        pending.done.wait()
        if pending.error is not None:
            raise Unavailable(f"WAL segment {segment.seq} could not be mirrored to the object store "
                              f"({pending.error}); the rows are in this node's WAL") from pending.error

    mirror = wait  # submit and wait, for a caller without the publish hook

    def removed(self, seqs: list[int]) -> None:
        """Segments left the WAL; objects holding none of the rest go (WAL ``on_removed`` hook)."""
        keys = []
        with self._cond:
            for seq in seqs:
                pending = self._queue.get(seq)
                if pending is not None:
                    pending.skip = True
                elif seq in self._inflight:
                    self._removed_inflight.add(seq)
                else:
                    keys += self._forget(seq)
        self._delete(keys)

    def _forget(self, seq: int) -> list[str]:
        """Under the lock: ``seq`` is gone; returns its object's key if that is now empty."""
        key = self._object_of.pop(seq, None)
        if key is None:
            return []
        live = self._live.get(key)
        if live is not None:
            live.discard(seq)
            if not live:
                del self._live[key]
                return [key]
        return []

    def _delete(self, keys: list[str]) -> None:
        if not keys:
            return
        try:
            self.store.delete_many(keys)
        except MinioDBError as exc:  # an orphan is skipped by its watermark and deleted later
            log.warning("could not delete %d mirrored WAL objects: %s", len(keys), exc)

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
            groups = _groups([p.segment for p in todo])
            futures = [self._pool.submit(self._upload, g) for g in groups]
            errors: dict[int, BaseException] = {}
            for group, f in zip(groups, futures, strict=True):
                exc = f.exception()
                if exc is not None:
                    errors.update({s.seq: exc for s in group})
            seqs = {p.segment.seq for p in todo}
            keys = []
            with self._cond:
                late = self._removed_inflight & seqs
                self._removed_inflight -= late
                self._inflight -= seqs
                for seq in late:
                    keys += self._forget(seq)
            self._delete(keys)
            for p in todo:
                if p.segment.seq not in late:  # removed while uploading: persisted, durable
                    p.error = errors.get(p.segment.seq)
            self.rounds += 1
            self.uploaded += len(todo)
            self.objects += len(groups)
            for p in batch:
                p.done.set()

    def _upload(self, group: list[Segment]) -> None:
        """One object: the segment file itself, or a bundle of several."""
        if len(group) == 1:
            key = wal_mirror_key(self.node_id, group[0].seq)
            self._retrying(lambda: self.store.put_file(key, group[0].path))
            self._track(key, {group[0].seq})
            return
        parts = []
        for seg in group:
            try:
                parts.append((seg.seq, seg.path.read_bytes()))
            except FileNotFoundError:
                continue  # removed meanwhile: persisted, nothing to protect
        if not parts:
            return
        key = wal_mirror_bundle_key(self.node_id, parts[0][0], parts[-1][0])
        body = pack_bundle(parts)
        self._retrying(lambda: self.store.put_bytes(key, body))
        self._track(key, {seq for seq, _ in parts})

    def _retrying(self, fn) -> None:
        for attempt in Retrying(retry=retry_if_exception_type(Unavailable), reraise=True,
                                stop=stop_after_delay(self.retry_seconds),
                                wait=wait_exponential(multiplier=0.05, max=1.0)):
            with attempt:
                fn()


def _groups(segments: list[Segment]) -> list[list[Segment]]:
    """Segments in sequence order, cut into objects: small ones together up to BUNDLE_BYTES,
    a large one alone."""
    groups: list[list[Segment]] = []
    current: list[Segment] = []
    size = 0
    for seg in sorted(segments, key=lambda s: s.seq):
        if seg.size >= BUNDLE_BYTES:
            groups.append([seg])
            continue
        if current and size + seg.size > BUNDLE_BYTES:
            groups.append(current)
            current, size = [], 0
        current.append(seg)
        size += seg.size
    if current:
        groups.append(current)
    return groups


def _write_durably(path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".restore.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)

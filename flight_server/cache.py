"""Local cache of immutable Parquet objects (LRU by bytes), so DuckDB reads local files.

Objects of a store that can be read in place (the local folder backend) are not copied.
Files handed to a query are pinned until the query ends, so eviction never removes a file
DuckDB is about to open.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

from .paths import cache_file_name
from .storage.base import ObjectStore


class FileCache:
    def __init__(self, store: ObjectStore, directory: str | Path, max_bytes: int):
        self.store = store
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, int] = OrderedDict()  # key -> size, LRU order
        self._pins: dict[str, int] = {}
        self._key_locks: dict[str, threading.Lock] = {}
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.bytes_downloaded = 0
        for p in self.dir.glob("*.tmp"):
            p.unlink(missing_ok=True)
        # adopt files left by a previous run (oldest first)
        for p in sorted(self.dir.iterdir(), key=lambda p: p.stat().st_mtime):
            if p.is_file():
                key = p.name.replace("__", "/")
                self._entries[key] = p.stat().st_size
                self.bytes += p.stat().st_size

    def _path(self, key: str) -> Path:
        return self.dir / cache_file_name(key)

    def local(self, key: str) -> str | None:
        """Local path of ``key`` if it needs no download (in place, or cached), else None."""
        direct = self.store.local_path(key)
        if direct is not None:
            return str(direct)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return str(self._path(key))
        return None

    def path(self, key: str) -> tuple[str, int]:
        """Local path of ``key`` (downloading it on a miss) and the bytes fetched for it."""
        direct = self.store.local_path(key)
        if direct is not None:
            return str(direct), 0
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return str(self._path(key)), 0
            klock = self._key_locks.setdefault(key, threading.Lock())
        with klock:
            with self._lock:
                if key in self._entries:
                    self.hits += 1
                    return str(self._path(key)), 0
            size = self.store.get_to_file(key, self._path(key))
            with self._lock:
                self.misses += 1
                self.bytes_downloaded += size
                self._add(key, size)
                self._key_locks.pop(key, None)
            return str(self._path(key)), size

    def adopt(self, key: str, local_file: str | Path) -> None:
        """Take a freshly written object into the cache (saves the download after a flush)."""
        if self.store.local_path(key) is not None:
            return
        os.replace(local_file, self._path(key))
        with self._lock:
            self._add(key, self._path(key).stat().st_size)

    def _add(self, key: str, size: int) -> None:
        if key in self._entries:
            self.bytes -= self._entries.pop(key)
        self._entries[key] = size
        self.bytes += size
        self._evict()

    def _evict(self) -> None:
        for key in list(self._entries):
            if self.bytes <= self.max_bytes:
                break
            if self._pins.get(key):
                continue
            self.bytes -= self._entries.pop(key)
            self._path(key).unlink(missing_ok=True)

    def discard(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                if key in self._entries and not self._pins.get(key):
                    self.bytes -= self._entries.pop(key)
                    self._path(key).unlink(missing_ok=True)

    def pin(self, keys: Iterable[str]) -> None:
        with self._lock:
            for k in keys:
                self._pins[k] = self._pins.get(k, 0) + 1

    def unpin(self, keys: Iterable[str]) -> None:
        with self._lock:
            for k in keys:
                n = self._pins.get(k, 0) - 1
                if n <= 0:
                    self._pins.pop(k, None)
                else:
                    self._pins[k] = n
            self._evict()

    @contextmanager
    def pinned(self, keys: Iterable[str]):
        keys = list(keys)
        self.pin(keys)
        try:
            yield
        finally:
            self.unpin(keys)

    def stats(self) -> dict:
        with self._lock:
            return {"bytes": self.bytes, "max_bytes": self.max_bytes, "files": len(self._entries),
                    "hits": self.hits, "misses": self.misses, "bytes_downloaded": self.bytes_downloaded}

"""Process memory policy for a serving node (glibc malloc).

Flight hands every received record batch to the node in memory that gRPC allocated with
``malloc``: one block per message (8 MB for a 250k-row batch of four 8-byte columns). glibc
serves blocks that large with a fresh ``mmap`` and gives them back with ``munmap`` when the
buffer is flushed, so the next large ingest pays a page fault for every 4 KiB it receives
again: ~80,000 faults for 320 MB, measured at ~3 µs each on a VM, i.e. about a quarter of a
second of kernel time on the ingest path. :func:`configure` keeps those blocks in the heap
(mmap threshold 32 MiB, glibc's maximum) and stops the heap from being trimmed after every
flush; :class:`IdleTrimmer` returns the memory to the OS once ingest has been quiet for a
while, so an idle node does not keep its peak RSS.

Both are no-ops where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time
from collections.abc import Callable

import pyarrow as pa

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's maximum (HEAP_MAX_SIZE / 2 on 64-bit)
TRIM_THRESHOLD = 1024 * 1024 * 1024


def _libc():
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        lib.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.malloc_trim.argtypes = [ctypes.c_size_t]
        return lib
    except (OSError, AttributeError):
        return None  # not glibc (musl, macOS): nothing to tune


def configure() -> bool:
    """Keep large freed blocks in the heap for reuse; True when glibc took the settings."""
    lib = _libc()
    if lib is None:
        return False
    ok = lib.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ok = lib.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    if not ok:
        log.debug("mallopt refused the ingest memory settings")
    return ok


def trim() -> None:
    """Give free heap memory back to the OS (glibc and Arrow's own pool)."""
    lib = _libc()
    if lib is not None:
        lib.malloc_trim(0)
    pa.default_memory_pool().release_unused()


class IdleTrimmer:
    """Calls :func:`trim` once ``activity()`` has not changed for ``idle_seconds``."""

    def __init__(self, activity: Callable[[], object], idle_seconds: float = 30.0, check_every: float = 5.0):
        self.activity = activity
        self.idle_seconds = idle_seconds
        self.check_every = check_every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.trims = 0

    def start(self) -> IdleTrimmer:
        self._thread = threading.Thread(target=self._run, name="miniodb-trim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        last = self.activity()
        changed_at = time.monotonic()
        trimmed = True  # nothing to give back before the first activity
        while not self._stop.wait(self.check_every):
            now_value = self.activity()
            now = time.monotonic()
            if now_value != last:
                last, changed_at, trimmed = now_value, now, False
            elif not trimmed and now - changed_at >= self.idle_seconds:
                trim()
                self.trims += 1
                trimmed = True

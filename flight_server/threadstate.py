"""One Python thread state per gRPC thread that calls into Python, kept across calls (Linux).

pyarrow's Flight server enters Python from gRPC's own threads (the auth check, the middleware,
the handler) with ``PyGILState_Ensure``/``Release``. A thread without a Python thread state
gets a fresh one for each of those calls and frees it at the end (with its 16 KiB frame stack:
an mmap and a munmap), three times per RPC on this node: ADBC's ``GetFlightInfo`` + ``DoGet``
of a tiny query paid it six times, 50-100 µs in all. :func:`pin` (called from the first
upcall of every call, the auth check) takes one ``PyGILState_Ensure`` more and never releases
it, so the thread keeps its state and later calls only take the GIL.

gRPC retires idle threads; the state of a thread that no longer exists (``/proc/self/task``)
is cleared and deleted when the pins reach :data:`MAX_PINNED`, so no more states than that
are ever kept. Only foreign threads are pinned (threads Python started have a state for
their whole life already). Elsewhere than Linux CPython :func:`pin` does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time

MAX_PINNED = 64
_TASKS = "/proc/self/task"
ENABLED = sys.implementation.name == "cpython" and os.path.isdir(_TASKS)

_api = ctypes.pythonapi
_api.PyGILState_Ensure.restype = ctypes.c_int
_api.PyThreadState_Get.restype = ctypes.c_void_p
_api.PyThreadState_Clear.argtypes = [ctypes.c_void_p]
_api.PyThreadState_Delete.argtypes = [ctypes.c_void_p]

_local = threading.local()  # lives as long as the thread state: set once the thread is pinned
_pinned: dict[int, int] = {}  # native thread id -> its PyThreadState*
_lock = threading.Lock()
_next_sweep = 0.0  # with every pin taken by a live thread, look for dead ones at most once a second


def pin() -> None:
    """Keep the calling gRPC thread's Python state for its next calls (cheap once pinned)."""
    global _next_sweep
    if not ENABLED or getattr(_local, "pinned", False):
        return
    if len(_pinned) >= MAX_PINNED and time.monotonic() < _next_sweep:
        return
    ident = threading.get_ident()
    if any(t.ident == ident for t in threading.enumerate() if not isinstance(t, threading._DummyThread)):
        _local.pinned = True  # a thread Python started: its state lives as long as the thread
        return
    tid = threading.get_native_id()
    with _lock:
        stale = _pinned.pop(tid, None)  # a dead pinned thread's id, reused by this thread
        if stale is not None and stale != _api.PyThreadState_Get():
            _delete(stale)
        if len(_pinned) >= MAX_PINNED:
            _sweep()
            if len(_pinned) >= MAX_PINNED:
                _next_sweep = time.monotonic() + 1.0
                return  # every pinned thread is alive: this one pays per call, as without pins
        _api.PyGILState_Ensure()  # never released: the state outlives this call
        _pinned[tid] = _api.PyThreadState_Get()
    _local.pinned = True


def _sweep() -> None:
    """Delete the states of pinned threads that exited (called with ``_lock`` held)."""
    try:
        alive = {int(name) for name in os.listdir(_TASKS)}
    except (OSError, ValueError):
        return
    for tid in [t for t in _pinned if t not in alive]:
        _delete(_pinned.pop(tid))


def _delete(state: int) -> None:
    """Free the state of a thread that no longer exists (never the caller's: it differs)."""
    _api.PyThreadState_Clear(state)
    _api.PyThreadState_Delete(state)


def pinned_count() -> int:
    return len(_pinned)

"""Pinned Python thread states of foreign threads (flight_server/threadstate.py): threads that C
code starts (gRPC's, here libc's pthread_create with a ctypes callback) keep their state across
calls once pinned, and the states of pinned threads that exited are deleted at the bound."""

from __future__ import annotations

import ctypes
import threading

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from flight_server import threadstate

pytestmark = pytest.mark.skipif(not threadstate.ENABLED, reason="thread states are pinned on Linux CPython only")

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)


def _in_foreign_thread(fn) -> None:
    """Run ``fn`` in a thread Python did not start (each entry into Python: a fresh state)."""
    libc = ctypes.CDLL(None, use_errno=True)
    callback = _CALLBACK(lambda _arg: fn())
    handle = ctypes.c_ulong()
    assert libc.pthread_create(ctypes.byref(handle), None, callback, None) == 0
    assert libc.pthread_join(handle, None) == 0  # the GIL is released while ctypes waits


def test_python_threads_are_not_pinned():
    before = threadstate.pinned_count()
    threadstate.pin()
    seen = []
    t = threading.Thread(target=lambda: (threadstate.pin(), seen.append(threadstate.pinned_count())))
    t.start()
    t.join()
    assert threadstate.pinned_count() == before and seen == [before]


def test_dead_pinned_threads_are_deleted_at_the_bound(monkeypatch):
    tids = []

    def body():
        threadstate.pin()
        tids.append(threading.get_native_id())
        assert threading.get_native_id() in threadstate._pinned

    _in_foreign_thread(body)
    assert tids[0] in threadstate._pinned  # its state outlived the exited thread ...
    monkeypatch.setattr(threadstate, "MAX_PINNED", threadstate.pinned_count())  # the next pin sweeps
    _in_foreign_thread(body)
    assert tids[0] not in threadstate._pinned  # ... until the bound: dead threads' states are freed
    assert tids[1] in threadstate._pinned


class _Server(flight.FlightServerBase):
    """A handler that remembers, in a threading.local, the calls its thread served."""

    local = threading.local()

    def get_flight_info(self, context, descriptor):
        count = getattr(self.local, "calls", 0) + 1
        self.local.calls = count
        table = pa.table({"calls": [count]})
        return flight.FlightInfo(table.schema, descriptor, [], count, -1)


class _Pinning(flight.ServerAuthHandler):
    def authenticate(self, outgoing, incoming):
        return None

    def is_valid(self, token):
        threadstate.pin()
        return ""


def test_grpc_threads_keep_their_state_across_calls():
    with _Server("grpc://127.0.0.1:0", auth_handler=_Pinning()) as server:
        client = flight.FlightClient(f"grpc://127.0.0.1:{server.port}")
        desc = flight.FlightDescriptor.for_command(b"x")
        counts = [client.get_flight_info(desc).total_records for _ in range(30)]
        client.close()
    # without a kept state every call starts with an empty threading.local (always 1)
    assert max(counts) > 1

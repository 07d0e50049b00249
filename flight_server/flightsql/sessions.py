"""Flight session options: SetSessionOptions, GetSessionOptions, CloseSession.

A session is found by the ``arrow_flight_session_id`` cookie (the Flight specification's
session cookie) and, for clients without a cookie jar (ADBC's default), by the gRPC peer of
the connection. The first call that stores options answers with a ``Set-Cookie`` header.

Accepted options: ``catalog`` (only ``miniodb``), ``schema`` (a known schema) and
``miniodb.multi_endpoint`` (a bool, or the string ``true``/``false``: plain scans answer one
FlightInfo endpoint per node holding data; coordinator/endpoints.py) and
``miniodb.as_of_version`` (a positive integer, or its text: every SELECT of the session reads
each table as of that version, as if written ``t AT (VERSION => n)``; unset it to read the
current data). Anything else
is reported per option in ``SetSessionOptionsResult.errors`` (``INVALID_NAME`` /
``INVALID_VALUE``), as the specification asks, never as a failed call.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from http.cookies import CookieError, SimpleCookie
from typing import Any

from clients.protocol import flight_pb2

from .metadata_commands import CATALOG, DEFAULT_SCHEMA

COOKIE = "arrow_flight_session_id"
MULTI_ENDPOINT = "miniodb.multi_endpoint"
AS_OF_VERSION = "miniodb.as_of_version"  # every table read as of this version (flight_server/snapshots.py)
_BOOLS = {"true": True, "1": True, "on": True, "false": False, "0": False, "off": False}
_Result = flight_pb2.SetSessionOptionsResult


def session_cookie(cookie_header: str) -> str:
    if not cookie_header or COOKIE not in cookie_header:
        return ""
    try:
        jar = SimpleCookie()
        jar.load(cookie_header)
    except CookieError:
        return ""
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else ""


def _value(v: flight_pb2.SessionOptionValue) -> Any:
    kind = v.WhichOneof("option_value")
    if kind is None:
        return None
    if kind == "string_list_value":
        return list(v.string_list_value.values)
    return getattr(v, kind)


def _option(value: Any) -> flight_pb2.SessionOptionValue:
    out = flight_pb2.SessionOptionValue()
    if isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int):
        out.int64_value = value
    elif isinstance(value, float):
        out.double_value = value
    elif isinstance(value, list):
        out.string_list_value.values.extend(value)
    else:
        out.string_value = str(value)
    return out


class SessionStore:
    """Options per session, bounded (LRU) and forgotten after ``idle_ttl`` seconds."""

    def __init__(self, schemas: Callable[[], list[str]], idle_ttl: float = 8 * 3600.0,
                 max_sessions: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self._schemas = schemas
        self.idle_ttl = idle_ttl
        self.max_sessions = max_sessions
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def keys(cookie_header: str, peer: str) -> tuple[str, str]:
        """(cookie key or "", peer key) of a call."""
        sid = session_cookie(cookie_header)
        return (f"cookie:{sid}" if sid else ""), f"peer:{peer}"

    def _find(self, keys: tuple[str, str]) -> dict[str, Any] | None:
        now = self._clock()
        for key in keys:
            if not key:
                continue
            item = self._items.get(key)
            if item is not None and now - item[0] <= self.idle_ttl:
                self._items[key] = (now, item[1])
                self._items.move_to_end(key)
                return item[1]
        return None

    def options(self, keys: tuple[str, str]) -> dict[str, Any]:
        with self._lock:
            found = self._find(keys)
        current = {"catalog": CATALOG, "schema": DEFAULT_SCHEMA}
        current.update(found or {})
        return current

    def set(self, keys: tuple[str, str], request: flight_pb2.SetSessionOptionsRequest) -> tuple[_Result, str]:
        """Apply the valid options; returns the result and a new session id when one was made."""
        result = _Result()
        changes: dict[str, Any] = {}
        for name, raw in request.session_options.items():
            value = _value(raw)
            if name == MULTI_ENDPOINT and isinstance(value, str) and value.lower() in _BOOLS:
                value = _BOOLS[value.lower()]
            if name == AS_OF_VERSION and isinstance(value, str) and value.strip().isdigit():
                value = int(value.strip())
            error = self._check(name, value)
            if error is not None:
                result.errors[name].value = error
            else:
                changes[name] = value
        new_id = ""
        with self._lock:
            opts = self._find(keys)
            if opts is None:
                opts = {}
                new_id = "" if keys[0] else uuid.uuid4().hex
                now = self._clock()
                for key in (keys[0] or f"cookie:{new_id}", keys[1]):
                    self._items[key] = (now, opts)
                while len(self._items) > 2 * self.max_sessions:
                    self._items.popitem(last=False)
            for name, value in changes.items():
                if value is None:
                    opts.pop(name, None)
                else:
                    opts[name] = value.lower() if isinstance(value, str) else value
        return result, new_id

    def _check(self, name: str, value: Any) -> int | None:
        if name not in ("catalog", "schema", MULTI_ENDPOINT, AS_OF_VERSION):
            return _Result.INVALID_NAME
        if value is None:
            return None  # erase: back to the default
        if name == MULTI_ENDPOINT:
            return None if isinstance(value, bool) else _Result.INVALID_VALUE
        if name == AS_OF_VERSION:
            ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
            return None if ok else _Result.INVALID_VALUE
        if not isinstance(value, str):
            return _Result.INVALID_VALUE
        if name == "catalog" and value.lower() != CATALOG:
            return _Result.INVALID_VALUE
        if name == "schema" and value.lower() not in {s.lower() for s in self._schemas()}:
            return _Result.INVALID_VALUE
        return None

    def get(self, keys: tuple[str, str]) -> flight_pb2.GetSessionOptionsResult:
        out = flight_pb2.GetSessionOptionsResult()
        for name, value in self.options(keys).items():
            out.session_options[name].CopyFrom(_option(value))
        return out

    def close(self, keys: tuple[str, str]) -> flight_pb2.CloseSessionResult:
        with self._lock:
            opts = self._find(keys)
            if opts is not None:
                for key in [k for k, (_, o) in self._items.items() if o is opts]:
                    del self._items[key]
        return flight_pb2.CloseSessionResult(status=flight_pb2.CloseSessionResult.CLOSED)

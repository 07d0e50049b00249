"""Prepared statements: handles, bound parameters and their time limits.

A handle is self-contained JSON: ``{"id": ..., "q": sql}``, plus ``"p"`` (the bound parameters
as base64 Arrow IPC) in the handle a parameter DoPut returns when they are small
(``DoPutPreparedStatementResult``). So a statement prepared on one node can be executed on
another (behind a load balancer): an unknown id is prepared again from ``q``. The node also
keeps the statement (and parameters of any size) by id until it is closed or idle too long.
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
import pyarrow as pa

from clients.errors import InvalidRequest, NotFound

MAX_HANDLE_PARAMS_BYTES = 64 * 1024  # larger parameter sets stay on the node only


def encode_params(params: pa.Table) -> str:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, params.schema) as writer:
        writer.write_table(params)
    return base64.b64encode(sink.getvalue().to_pybytes()).decode("ascii")


def decode_params(text: str) -> pa.Table:
    try:
        return pa.ipc.open_stream(pa.py_buffer(base64.b64decode(text))).read_all()
    except (ValueError, pa.ArrowInvalid) as exc:
        raise InvalidRequest("malformed parameters in a statement handle or ticket") from exc


@dataclass
class PreparedStatement:
    id: str
    sql: str
    kind: str
    is_update: bool
    param_count: int
    dataset_schema: pa.Schema | None  # None: not known at prepare time
    parameter_schema: pa.Schema
    params: pa.Table | None = None
    used_at: float = field(default=0.0)

    def handle(self) -> bytes:
        body: dict = {"id": self.id, "q": self.sql}
        if self.params is not None and self.params.nbytes <= MAX_HANDLE_PARAMS_BYTES:
            body["p"] = encode_params(self.params)
        return orjson.dumps(body)


@dataclass(frozen=True)
class Handle:
    id: str
    sql: str
    params: pa.Table | None


def parse_handle(raw: bytes) -> Handle:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest("malformed prepared statement handle") from exc
    if not isinstance(body, dict) or not isinstance(body.get("id"), str) or not isinstance(body.get("q"), str):
        raise InvalidRequest("malformed prepared statement handle")
    params = decode_params(body["p"]) if isinstance(body.get("p"), str) else None
    return Handle(body["id"], body["q"], params)


class PreparedStatements:
    """The node's open prepared statements, closed explicitly or after ``idle_ttl`` seconds."""

    def __init__(self, idle_ttl: float = 3600.0, max_open: int = 10_000,
                 clock: Callable[[], float] = time.monotonic):
        self.idle_ttl = idle_ttl
        self.max_open = max_open
        self._clock = clock
        self._items: OrderedDict[str, PreparedStatement] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    def add(self, stmt: PreparedStatement) -> PreparedStatement:
        now = self._clock()
        stmt.used_at = now
        with self._lock:
            self._items[stmt.id] = stmt
            self._items.move_to_end(stmt.id)
            while len(self._items) > self.max_open:
                self._items.popitem(last=False)
            self._expire_locked(now)
        return stmt

    def get(self, handle: Handle) -> PreparedStatement | None:
        now = self._clock()
        with self._lock:
            stmt = self._items.get(handle.id)
            if stmt is None:
                return None
            stmt.used_at = now
            self._items.move_to_end(handle.id)
        if handle.params is not None and stmt.params is None:
            stmt.params = handle.params
        return stmt

    def close(self, handle_id: str) -> bool:
        with self._lock:
            return self._items.pop(handle_id, None) is not None

    def _expire_locked(self, now: float) -> None:
        while self._items:
            oldest = next(iter(self._items.values()))
            if now - oldest.used_at <= self.idle_ttl:
                return
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def require(stmt: PreparedStatement | None) -> PreparedStatement:
    if stmt is None:
        raise NotFound("prepared statement expired or unknown; prepare it again")
    return stmt

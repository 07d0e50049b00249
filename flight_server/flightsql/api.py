"""What the Flight SQL handlers need from the node (:class:`NodeAPI`), and the small pieces
every handler group shares (the empty schema, the transaction refusal, optional fields).

Handlers reach the node only through :class:`NodeAPI` (query, ingest, updates, tables,
actions), so the ``flightsql`` package holds protocol logic and no storage logic.
"""

from __future__ import annotations

from typing import Any, Protocol

import pyarrow as pa

from clients.errors import Unimplemented

from ..query.statement import Statement
from .metadata_commands import SqlTable

EMPTY_SCHEMA = pa.schema([])
TXN = "transactions are not supported: every statement commits on its own"


class NodeAPI(Protocol):
    node_id: str

    def query(self, sql: str | Statement, params: Any = None) -> Any: ...
    def query_schema(self, sql: str | Statement, params: Any = None) -> pa.Schema: ...
    def execute_update(self, sql: str, params: pa.Table | None = None) -> int: ...
    def ingest(self, table: str, reader: Any, schema: pa.Schema, mode: str, batch_id: str = "") -> Any: ...
    def sql_tables(self) -> list[SqlTable]: ...
    def action(self, name: str, body: dict) -> Any: ...
    def query_endpoints(self, sql: str | Statement, requested: Any = None) -> tuple | None: ...
    def cluster_fragment(self, ticket: bytes) -> pa.Table: ...
    def cluster_action(self, kind: str, body: bytes) -> dict: ...


def check_txn(cmd: Any) -> None:
    """Refuse a command bound to a transaction (none are ever begun)."""
    if cmd.HasField("transaction_id") and cmd.transaction_id:
        raise Unimplemented(TXN)


def serialize(schema: pa.Schema | None) -> bytes:
    return schema.serialize().to_pybytes() if schema is not None else b""


def opt(cmd: Any, name: str) -> str | None:
    """An optional string field of a command (None when unset)."""
    return getattr(cmd, name) if cmd.HasField(name) else None

"""An in-process node for the micro-benchmarks: the production assembly (``Node``) on port 0,
with no REST gateway and no automatic flush (the benchmark decides when to flush)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa

from flight_server.config import load_settings
from flight_server.node import Node

NEVER = 10**9


def start_node(root: Path, env: Mapping[str, str] | None = None, **overrides) -> Node:
    """A node over ``root`` (embedded storage unless ``env`` configures Redis/S3)."""
    settings = {"server.data_dir": str(root), "server.host": "127.0.0.1", "server.grpc_port": 0,
                "server.rest_port": 0, "server.metrics_port": 0, "server.node_id": "bench",
                "buffer.size": NEVER, "buffer.flush_interval": NEVER, "buffer.max_bytes": 1 << 40,
                "query.cache_enabled": False, **overrides}
    return Node(load_settings(None, settings, environ=dict(env or {}))).start()


def ingest(node: Node, table: str, data: pa.Table, mode: str = "create_append") -> int:
    """The durable ingest path a DoPut takes (validate, WAL fsync, buffer), as the Flight server calls it."""
    return node.ingest(table, data.to_batches(), data.schema, mode).rows

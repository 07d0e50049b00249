"""The node's cluster query service: builds the coordinator and answers the internal calls.

``coordinator.mode = distributed`` (the default) applies in server mode (Redis metadata,
several nodes); an embedded node (SQLite metadata) and ``mode = local`` (or
``enabled = false``) answer every query from their own view, as before.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pyarrow as pa

from clients.errors import InvalidRequest, Unauthenticated

from ..query.statement import Statement
from .cluster import ACTION_CANCEL, ACTION_PIN, ACTION_RELEASE, Signer, derive_secret
from .coordinator import Coordinator
from .endpoints import conform_to, decode_schema, endpoints
from .peer import PeerService
from .peers import PeerClients

TOKEN_REFRESH = 3600.0


class ClusterService:
    def __init__(self, node: Any):
        s = node.settings
        c = s.coordinator
        self.distributed = bool(c.enabled and c.mode == "distributed" and not s.metadata_url.startswith("sqlite"))
        keys = s.server.api_keys if s.server.auth_enabled else ()
        shared = f"{s.metadata_url}|{s.object_store_url}"
        self.signer = Signer(derive_secret(c.cluster_secret, keys, shared))
        self.metrics = node.metrics
        self.faults = getattr(node, "faults", None) or (lambda step: None)  # crash points (tests only)
        self.peer = PeerService(node.node_id, node.catalog, node.metadata, node.buffers, node.engine, node.resolver)
        self._api_keys = node.api_keys
        self._token: tuple[str, float] | None = None
        self._token_lock = threading.Lock()
        roots = s.server.tls_cert_file if s.server.tls_enabled else ""
        clients = PeerClients(self._bearer if self._api_keys is not None else None, roots)
        self.coordinator = Coordinator(node.node_id, c, node.catalog, node.metadata, node.engine, self.peer,
                                       clients, self.signer, node.metrics)

    def _bearer(self) -> str:
        with self._token_lock:
            now = time.monotonic()
            if self._token is None or now - self._token[1] > TOKEN_REFRESH:
                keys = self._api_keys
                principal = keys.principal(keys._keys[0].kid)
                self._token = (keys.issue(principal), now)
            return self._token[0]

    # -- internal calls (peer side) ------------------------------------------------------
    def fragment(self, raw: bytes) -> pa.Table:
        body = self.signer.verify(raw)
        if not all(k in body for k in ("q", "t", "sql")):
            raise InvalidRequest("malformed fragment ticket")
        self.metrics.query_fragments.labels(role="peer").inc()
        self.faults("cluster_fragment")
        table = self.peer.fragment(body)
        if isinstance(body.get("schema"), str):  # a client's endpoint ticket (endpoints.py): exact types
            table = conform_to(table, decode_schema(body["schema"]))
        return table

    def endpoints(self, st: Statement, schema: pa.Schema) -> list[tuple[str, bytes]] | None:
        """One (location, signed ticket) per node holding data of a plain scan, or None."""
        if not self.distributed:
            return None
        return endpoints(self.coordinator, st, schema)

    def action(self, kind: str, raw: bytes) -> dict:
        body = self.signer.verify(raw)
        qid = str(body.get("q", ""))
        if not qid:
            raise Unauthenticated("invalid cluster credential")
        if kind == ACTION_PIN:
            tables = [str(t) for t in body.get("tables") or ()]
            inline = body.get("inline")
            return self.peer.pin(qid, tables, float(body.get("ttl") or 300.0),
                                 inline if isinstance(inline, dict) else None, int(body.get("inline_rows") or 0))
        if kind == ACTION_RELEASE:
            return self.peer.release(qid)
        if kind == ACTION_CANCEL:
            return self.peer.cancel(qid)
        raise InvalidRequest(f"unknown cluster action {kind!r}")

    def close(self) -> None:
        self.coordinator.close()

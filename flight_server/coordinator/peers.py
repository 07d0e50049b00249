"""Flight clients to the other nodes (one per address, reused), for the coordinator.

Calls carry the cluster-signed message; with auth on they also carry a bearer token of
the shared API keys (every node accepts a token any node issued). With TLS on, the node's
own certificate is the trust root (a cluster shares one certificate or one CA: set
``tls_roots`` to the CA bundle otherwise).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.flight as flight


class PeerClients:
    def __init__(self, token: Any = None, tls_roots: str = ""):
        self._token = token  # callable -> bearer token, or None (auth off)
        self._roots = Path(tls_roots).read_bytes() if tls_roots else None
        self._clients: dict[str, flight.FlightClient] = {}
        self._lock = threading.Lock()

    def _client(self, uri: str) -> flight.FlightClient:
        with self._lock:
            c = self._clients.get(uri)
            if c is None:
                kwargs = {"tls_root_certs": self._roots} if self._roots and uri.startswith("grpc+tls") else {}
                c = flight.FlightClient(uri, **kwargs)
                self._clients[uri] = c
            return c

    def drop(self, uri: str) -> None:
        with self._lock:
            c = self._clients.pop(uri, None)
        if c is not None:
            try:
                c.close()
            except Exception:  # noqa: BLE001 - a broken channel is discarded anyway
                pass

    def _options(self, timeout: float) -> flight.FlightCallOptions:
        headers = [(b"authorization", f"Bearer {self._token()}".encode())] if self._token is not None else []
        return flight.FlightCallOptions(timeout=timeout, headers=headers)

    def action(self, uri: str, name: str, body: bytes, timeout: float) -> dict:
        results = list(self._client(uri).do_action(flight.Action(name, body), options=self._options(timeout)))
        return orjson.loads(results[0].body.to_pybytes()) if results else {}

    def fragment(self, uri: str, ticket: bytes, timeout: float, on_reader=None) -> pa.Table:
        reader = self._client(uri).do_get(flight.Ticket(ticket), options=self._options(timeout))
        if on_reader is not None:
            on_reader(reader)
        return reader.read_all()

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for c in clients:
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass

"""TLS of a node's listeners: the Flight server's certificate pair and the HTTPS context of the
metrics port, both from ``server.tls_cert_file`` / ``server.tls_key_file``."""

from __future__ import annotations

import ssl
from pathlib import Path

from .config import ServerSettings


def flight_certificates(server: ServerSettings) -> list[tuple[bytes, bytes]]:
    """(cert PEM, key PEM) pairs for pyarrow.flight.FlightServerBase; empty when TLS is off."""
    if not server.tls_enabled:
        return []
    return [(Path(server.tls_cert_file).read_bytes(), Path(server.tls_key_file).read_bytes())]


def server_ssl_context(server: ServerSettings) -> ssl.SSLContext | None:
    """The HTTPS context of the node's own HTTP listeners; None when TLS is off."""
    if not server.tls_enabled:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(server.tls_cert_file, server.tls_key_file)
    return ctx

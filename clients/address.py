"""Node addresses: what the CLI, the Python client and the gateway accept as a node's URI."""

from __future__ import annotations

import re

from . import errors

URI_SCHEMES = ("grpc", "grpc+tcp", "grpc+tls", "grpc+unix")
ACCEPTED_URIS = "use grpc://host:port, grpc+tls://host:port or host:port (a node's Flight port, 8080 by default)"
_HOST_PORT = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[\w.-]+)(?::\d+)?")


def normalize_uri(uri: str) -> str:
    """A node address as a Flight URI: ``host:port`` (or ``host``) means ``grpc://host:port``
    (port 8080 by default); an HTTP URL (the REST gateway's) is refused with the accepted forms."""
    text = uri.strip()
    scheme, sep, _ = text.partition("://")
    if not sep:
        if _HOST_PORT.fullmatch(text):
            has_port = "]:" in text if text.startswith("[") else ":" in text
            return f"grpc://{text}" if has_port else f"grpc://{text}:8080"
        raise errors.InvalidRequest(f"cannot use {uri!r} as a node address: {ACCEPTED_URIS}")
    if scheme.lower() in ("http", "https"):
        raise errors.InvalidRequest(f"{uri!r} is an HTTP address (the REST gateway speaks HTTP; the CLI and "
                                    f"the Python client speak Flight): {ACCEPTED_URIS}")
    if scheme.lower() not in URI_SCHEMES:
        raise errors.InvalidRequest(f"unsupported scheme {scheme + '://'!r} in {uri!r}: {ACCEPTED_URIS}")
    return text

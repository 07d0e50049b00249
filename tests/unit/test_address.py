"""Node addresses accepted by the CLI, the Python client and the gateway."""

from __future__ import annotations

import pytest

from clients import errors
from clients.address import normalize_uri


@pytest.mark.parametrize("given,expected", [
    ("localhost:8080", "grpc://localhost:8080"), ("db.internal", "grpc://db.internal:8080"),
    ("[::1]:9000", "grpc://[::1]:9000"), ("[::1]", "grpc://[::1]:8080"), (" grpc://h:1 ", "grpc://h:1"),
    ("grpc+tls://h:443", "grpc+tls://h:443"), ("grpc+tcp://h:1", "grpc+tcp://h:1"),
])
def test_accepted(given, expected):
    assert normalize_uri(given) == expected


@pytest.mark.parametrize("given", ["http://localhost:8081", "HTTPS://x", "ftp://x", "a b", "host:port:x"])
def test_refused_with_the_accepted_forms(given):
    with pytest.raises(errors.InvalidRequest) as e:
        normalize_uri(given)
    assert "grpc://host:port" in e.value.message and "grpc+tls://" in e.value.message

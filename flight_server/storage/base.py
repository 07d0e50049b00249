"""ObjectStore: the capability to keep immutable objects under string keys.

Implementations: :class:`~flight_server.storage.local.LocalObjectStore` (a folder, the
default) and :class:`~flight_server.storage.s3.S3ObjectStore` (any S3 endpoint through the
``minio`` SDK). Pick one by URL with :func:`flight_server.storage.load_object_store`.

Errors: a missing key raises ``clients.errors.NotFound``; an endpoint that stays unreachable
after the retries raises ``clients.errors.Unavailable``; bad credentials raise
``clients.errors.Unauthenticated``.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from clients.errors import InvalidRequest


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative ``/``-separated key, else raise InvalidRequest."""
    if not isinstance(key, str) or not key:
        raise InvalidRequest("object key must be a non-empty string")
    if key.startswith("/"):
        raise InvalidRequest(f"object key {key!r} must be relative (no leading '/')")
    if "\x00" in key:
        raise InvalidRequest(f"object key {key!r} contains a NUL character")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise InvalidRequest(f"object key {key!r} has an empty, '.' or '..' segment")
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix: empty, or a key (optionally ending in ``/``)."""
    if prefix == "":
        return prefix
    if not isinstance(prefix, str):
        raise InvalidRequest("object key prefix must be a string")
    validate_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: dt.datetime | None = None


class ObjectStore(abc.ABC):
    """Immutable objects under ``/``-separated keys. Thread-safe."""

    url: str

    @abc.abstractmethod
    def put_file(self, key: str, path: str | Path) -> int:
        """Upload a local file atomically (readers see all of it or nothing); returns bytes."""

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes) -> int:
        """Store ``data`` atomically under ``key``; returns bytes."""

    @abc.abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Whole object; NotFound if missing."""

    @abc.abstractmethod
    def get_to_file(self, key: str, path: str | Path) -> int:
        """Download the whole object to ``path`` (written atomically); returns bytes."""

    def local_path(self, key: str) -> Path | None:
        """A path where the object can be read in place, or None (remote stores)."""
        return None

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Size and time of one object; NotFound if missing."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove one object; a missing key is not an error."""

    def delete_many(self, keys: list[str]) -> None:
        for key in keys:
            self.delete(key)

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix``, recursively, sorted by key."""

    def delete_prefix(self, prefix: str) -> int:
        keys = [o.key for o in self.list(prefix)]
        self.delete_many(keys)
        return len(keys)

    @abc.abstractmethod
    def check(self) -> None:
        """Health check: returns if the store answers, raises Unavailable otherwise."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

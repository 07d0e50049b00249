"""Object storage: pick a backend by URL scheme.

::

    file:///abs/path            LocalObjectStore (the embedded default)
    s3://host:port/bucket       S3ObjectStore over plain HTTP
    s3s://host:port/bucket      S3ObjectStore over TLS

Credentials, region, CA file and retry policy come from :class:`StorageSettings`, never
from the URL. Other backends plug in with :func:`register_object_store`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from clients.errors import InvalidRequest
from flight_server.config import StorageSettings
from flight_server.storage.base import ObjectInfo, ObjectStore, validate_key, validate_prefix
from flight_server.storage.local import LocalObjectStore
from flight_server.storage.s3 import S3ObjectStore

__all__ = [
    "LocalObjectStore",
    "ObjectInfo",
    "ObjectStore",
    "S3ObjectStore",
    "load_object_store",
    "register_object_store",
    "validate_key",
    "validate_prefix",
]

ObjectStoreFactory = Callable[[str, StorageSettings], ObjectStore]
_FACTORIES: dict[str, ObjectStoreFactory] = {}


def register_object_store(scheme: str, factory: ObjectStoreFactory) -> None:
    """Make ``load_object_store`` build ``factory(url, settings)`` for ``scheme://`` URLs."""
    _FACTORIES[scheme.lower()] = factory


def load_object_store(url: str, settings: StorageSettings | None = None) -> ObjectStore:
    """The object store named by ``url``; raises InvalidRequest for a malformed URL."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    factory = _FACTORIES.get(scheme)
    if factory is None:
        known = ", ".join(f"{s}://" for s in sorted(_FACTORIES))
        raise InvalidRequest(f"unknown object store scheme {scheme or url!r} (known: {known})")
    return factory(url, settings or StorageSettings())


def _local(url: str, settings: StorageSettings) -> LocalObjectStore:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise InvalidRequest(f"object store URL {url!r}: file:// URLs take no host (use file:///abs/path)")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise InvalidRequest(f"object store URL {url!r}: the path must be absolute")
    return LocalObjectStore(Path(path))


def _s3(url: str, settings: StorageSettings) -> S3ObjectStore:
    parts = urlsplit(url)
    bucket = parts.path.strip("/")
    if "@" in parts.netloc:  # do not echo the URL: it holds a secret
        raise InvalidRequest("object store URL: credentials belong in storage.minio, not in the URL")
    if not parts.netloc or not bucket or "/" in bucket:
        raise InvalidRequest(f"object store URL {url!r}: expected {parts.scheme}://host:port/bucket")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise InvalidRequest(f"object store URL {url!r}: bad port") from exc
    m = settings.minio
    return S3ObjectStore(
        endpoint=parts.netloc,
        access_key=m.access_key,
        secret_key=m.secret_key,
        bucket=bucket,
        secure=parts.scheme.lower() == "s3s",
        region=m.region or None,
        retry_attempts=settings.retry_attempts,
        retry_max_seconds=settings.retry_max_seconds,
        ca_file=m.ca_file or None,
    )


register_object_store("file", _local)
register_object_store("s3", _s3)
register_object_store("s3s", _s3)

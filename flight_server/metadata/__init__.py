"""Metadata backends, chosen by URL scheme: ``sqlite:///path``, ``redis://``, ``redis+sentinel://``."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlparse

from clients.errors import InvalidRequest

from .base import FileEntry, MetadataStore, NodeInfo, TableConfig, TableInfo
from .sqlite import SQLiteMetadataStore

_REGISTRY: dict[str, Callable[..., MetadataStore]] = {}


def register_metadata_store(scheme: str, factory: Callable[..., MetadataStore]) -> None:
    _REGISTRY[scheme] = factory


def load_metadata_store(url: str, **options) -> MetadataStore:
    scheme = urlparse(url).scheme
    if scheme not in _REGISTRY:
        raise InvalidRequest(f"unknown metadata store scheme {scheme!r} in {url!r}")
    return _REGISTRY[scheme](url, **options)


def _sqlite(url: str, **options) -> MetadataStore:
    path = url[len("sqlite://"):]
    return SQLiteMetadataStore(path, **{k: v for k, v in options.items() if k == "clock"})


def _redis(url: str, settings=None, clock=None, **options) -> MetadataStore:
    from .redis import RedisMetadataStore  # redis-py loads only when a node uses Redis

    extra = {"clock": clock} if clock is not None else {}
    return RedisMetadataStore.from_url(url, settings, **extra, **options)


register_metadata_store("sqlite", _sqlite)
register_metadata_store("redis", _redis)
register_metadata_store("redis+sentinel", _redis)

__all__ = [
    "FileEntry", "MetadataStore", "NodeInfo", "TableConfig", "TableInfo", "SQLiteMetadataStore",
    "load_metadata_store", "register_metadata_store",
]

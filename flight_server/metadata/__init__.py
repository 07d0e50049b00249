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


register_metadata_store("sqlite", _sqlite)

__all__ = [
    "FileEntry", "MetadataStore", "NodeInfo", "TableConfig", "TableInfo", "SQLiteMetadataStore",
    "load_metadata_store", "register_metadata_store",
]

"""MetadataStore: tables, the file manifest, sequence counters, data versions, live nodes.

Implementations: :class:`~flight_server.metadata.sqlite.SQLiteMetadataStore` (embedded, the
default) and ``RedisMetadataStore`` (server mode, standalone or Sentinel). Pick one by URL
with :func:`flight_server.metadata.load_metadata_store`.

Contract (checked by ``tests/contract/test_metadata_store.py`` against every backend):

* ``create_table`` is atomic and raises ``AlreadyExists``; names are unique.
* ``commit_files`` adds and removes manifest entries, bumps the table's data version and
  records the WAL watermark of the committing node in one atomic step; it raises
  ``NotFound`` if the table (that incarnation, by ``table_id``) no longer exists. With
  ``since=S`` it commits only if the committing node's watermark for that table is still
  below ``S`` and raises :class:`WatermarkFenced` otherwise: rows numbered ``S`` and up were
  committed already (by a node that adopted this node's mirrored WAL while it looked dead),
  so they must not be committed twice.
* ``update_table`` is a compare-and-set on ``schema_version`` (``Conflict`` if it moved).
* ``drop_table`` removes the table, its manifest and its watermarks; it returns the
  dropped file entries so the caller can delete the objects. It leaves a tombstone of the
  incarnation: ``was_dropped(table_id)`` is true only for a table that was really dropped,
  never for one the store does not know (a metadata store that came back empty, or was
  pointed at another deployment). Buffered rows and WAL segments are discarded only for
  confirmed drops.
* Batch ids (exactly-once ingest, :mod:`flight_server.batches`): ``claim_batch`` is one
  atomic check-and-set: it answers ``done`` (with the row count recorded within the
  window), ``busy`` (another node holds a live claim) or ``claimed`` (the caller owns it for
  ``ttl`` seconds; a node takes over its own claims from an earlier incarnation). A claim is
  renewed while applying, released on failure and turned into ``done`` for
  ``batch_window`` seconds by ``finish_batch`` or by ``commit_files(batches=...)``, in the
  same atomic step as the files.
* Leases (one compactor per table across the cluster, :mod:`flight_server.compaction`):
  ``acquire_lease(name, owner, ttl)`` is one atomic check-and-set that succeeds when nobody
  else holds a live lease of that name (the holder acquiring again extends it);
  ``renew_lease`` and ``release_lease`` act only when ``owner`` still holds it. A lease whose
  holder stops renewing expires after ``ttl`` seconds.
* Every ``commit_files`` appends a version to the table's version log in the same atomic
  step (:mod:`flight_server.metadata.versions`); ``trim_versions`` folds old versions into the
  log's base and records the keys they removed as garbage for the vacuum.
* A backend that cannot be reached raises ``clients.errors.Unavailable``.
"""

from __future__ import annotations

import abc
import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from clients.errors import Conflict

SNAPSHOT_FORMAT = 1


@dataclass(frozen=True)
class TableConfig:
    """Per-table settings; ``None`` means "use the node's default"."""

    buffer_size: int | None = None
    flush_interval_seconds: float | None = None
    retention_days: int | None = None
    properties: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "buffer_size": self.buffer_size,
            "flush_interval_seconds": self.flush_interval_seconds,
            "retention_days": self.retention_days,
            "properties": dict(self.properties),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> TableConfig:
        d = d or {}
        return cls(
            buffer_size=d.get("buffer_size"),
            flush_interval_seconds=d.get("flush_interval_seconds"),
            retention_days=d.get("retention_days"),
            properties=dict(d.get("properties") or {}),
        )


@dataclass(frozen=True)
class TableInfo:
    name: str
    table_id: str  # identifies this incarnation; a re-created table gets a new id
    schema: pa.Schema
    config: TableConfig = field(default_factory=TableConfig)
    time_column: str | None = None
    schema_version: int = 1
    created_at: float = 0.0

    def with_schema(self, schema: pa.Schema) -> TableInfo:
        return replace(self, schema=schema, schema_version=self.schema_version + 1)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "table_id": self.table_id,
            "schema": schema_to_b64(self.schema),
            "config": self.config.to_json(),
            "time_column": self.time_column,
            "schema_version": self.schema_version,
            "created_at": self.created_at,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TableInfo:
        return cls(
            name=d["name"],
            table_id=d["table_id"],
            schema=schema_from_b64(d["schema"]),
            config=TableConfig.from_json(d.get("config")),
            time_column=d.get("time_column"),
            schema_version=int(d.get("schema_version", 1)),
            created_at=float(d.get("created_at", 0.0)),
        )


@dataclass(frozen=True)
class FileEntry:
    """One committed Parquet object of a table."""

    key: str
    rows: int
    size: int
    min_values: Mapping[str, Any] = field(default_factory=dict)  # column -> JSON-encoded stat
    max_values: Mapping[str, Any] = field(default_factory=dict)
    node_id: str = ""
    created_at: float = 0.0
    columns: tuple[str, ...] = ()  # columns present in the file (older files lack newer columns)
    wal_seq: int = 0  # highest WAL sequence of the committing node's rows in it (0: unknown, adopted)

    def to_json(self) -> dict:
        out = {
            "key": self.key,
            "columns": list(self.columns),
            "rows": self.rows,
            "size": self.size,
            "min": dict(self.min_values),
            "max": dict(self.max_values),
            "node_id": self.node_id,
            "created_at": self.created_at,
        }
        if self.wal_seq:
            out["wal_seq"] = self.wal_seq
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> FileEntry:
        return cls(
            key=d["key"],
            rows=int(d["rows"]),
            size=int(d["size"]),
            min_values=dict(d.get("min") or {}),
            max_values=dict(d.get("max") or {}),
            node_id=d.get("node_id", ""),
            created_at=float(d.get("created_at", 0.0)),
            columns=tuple(d.get("columns") or ()),
            wal_seq=int(d.get("wal_seq") or 0),
        )


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    flight_uri: str
    version: str = ""
    started_at: float = 0.0
    rest_uri: str = ""
    metrics_uri: str = ""
    last_seen: float = 0.0

    def to_json(self) -> dict:
        return {
            "node_id": self.node_id,
            "flight_uri": self.flight_uri,
            "version": self.version,
            "started_at": self.started_at,
            "rest_uri": self.rest_uri,
            "metrics_uri": self.metrics_uri,
            "last_seen": self.last_seen,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> NodeInfo:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class WatermarkFenced(Conflict):
    """``commit_files(since=S)`` found the node's watermark at ``watermark`` >= ``S``: the rows
    up to ``watermark`` are committed already and nothing was written."""

    def __init__(self, message: str, watermark: int):
        super().__init__(message)
        self.watermark = watermark


class FilesChanged(Conflict):
    """``commit_files(strict=True)`` found that some of the files it was told to remove are no
    longer in the manifest (a concurrent rewrite took them): nothing was written."""

    def __init__(self, message: str, missing: list[str]):
        super().__init__(message)
        self.missing = missing


if TYPE_CHECKING:
    from .versions import VersionLog


class MetadataStore(abc.ABC):
    """Thread-safe catalog of one MinIODB deployment."""

    url: str

    # -- tables ------------------------------------------------------------------------
    @abc.abstractmethod
    def create_table(self, info: TableInfo) -> TableInfo: ...

    @abc.abstractmethod
    def get_table(self, name: str) -> TableInfo | None: ...

    @abc.abstractmethod
    def list_tables(self) -> list[TableInfo]:
        """All tables, sorted by name."""

    @abc.abstractmethod
    def update_table(self, info: TableInfo, expected_schema_version: int) -> TableInfo:
        """Replace schema/config if the stored ``schema_version`` still equals the expected one."""

    @abc.abstractmethod
    def drop_table(self, name: str) -> list[FileEntry]:
        """Remove the table and its manifest; NotFound if missing. Returns the dropped files."""

    # -- manifest ----------------------------------------------------------------------
    @abc.abstractmethod
    def commit_files(
        self,
        table: str,
        table_id: str,
        add: list[FileEntry],
        remove: list[str] = (),
        watermark: tuple[str, int] | None = None,
        batches: Mapping[str, int] | None = None,
        since: int | None = None,
        strict: bool = False,
        operation: str = "commit",
    ) -> int:
        """Atomically add/remove entries, bump and return the data version, set the watermark
        and record ``batches`` (batch id -> rows) as done for ``batch_window`` seconds.
        ``since`` (with ``watermark``): refuse with :class:`WatermarkFenced` when the stored
        watermark of ``watermark[0]`` for this table is ``since`` or more.
        ``strict``: refuse with :class:`FilesChanged` unless every key of ``remove`` is in the
        manifest (rewrites - DML, compaction, restore - replace exactly the files they read).
        ``operation`` (``flush``, ``retention``, ``restore``...) is recorded in the table's
        version log, which the same atomic step appends to (:mod:`.versions`)."""

    @abc.abstractmethod
    def list_files(self, table: str) -> list[FileEntry]:
        """Manifest of a table sorted by key (empty for an unknown table)."""

    @abc.abstractmethod
    def data_version(self, table: str) -> int:
        """Monotonic counter bumped by every commit and schema change; 0 for unknown."""

    def data_versions(self, tables: Sequence[str]) -> list[int]:
        """:meth:`data_version` of each table (a store may read them in one round trip)."""
        return [self.data_version(t) for t in tables]

    @abc.abstractmethod
    def get_watermark(self, node_id: str, table_id: str) -> int:
        """Highest WAL sequence of ``node_id`` persisted for the table incarnation (0: none)."""

    @abc.abstractmethod
    def was_dropped(self, table_id: str) -> bool:
        """The table incarnation ``table_id`` was dropped (or replaced) through ``drop_table``."""

    # -- version log (flight_server/metadata/versions.py) ----------------------------------
    @abc.abstractmethod
    def version_log(self, table_id: str) -> VersionLog:
        """The retained history of a table incarnation (one consistent read; empty if none)."""

    @abc.abstractmethod
    def version_logs(self) -> dict[str, str]:
        """table_id -> table name of every incarnation that has a version log."""

    @abc.abstractmethod
    def trim_versions(self, table_id: str, upto: int) -> int:
        """Fold the log entries numbered ``<= upto`` into the base, atomically; keys they removed
        become garbage. Returns how many entries were folded."""

    @abc.abstractmethod
    def drop_version_log(self, table_id: str) -> None:
        """Forget the history of a dropped incarnation (after the vacuum deleted its objects)."""

    @abc.abstractmethod
    def garbage(self) -> dict[str, tuple[str, float]]:
        """Object key -> (table_id, removed at) of files folded out of every version log."""

    @abc.abstractmethod
    def add_garbage(self, table_id: str, removed: Mapping[str, float]) -> None:
        """Track keys (-> removed at; a negative time marks an object the vacuum deleted already)."""

    @abc.abstractmethod
    def forget_garbage(self, keys: list[str]) -> None:
        """The objects are deleted (or referenced again): stop tracking them."""

    @abc.abstractmethod
    def current_version(self) -> int:
        """The global data version counter (the newest version of any table)."""

    # -- batch ids (exactly-once ingest) -----------------------------------------------
    batch_window: float = 86_400.0  # seconds a finished batch id is remembered (ingest.dedup_window)

    @abc.abstractmethod
    def claim_batch(self, batch_id: str, node_id: str, incarnation: str, ttl: float) -> tuple[str, int, str]:
        """``("done", rows, "")``, ``("busy", 0, owner node)`` or ``("claimed", 0, node_id)``."""

    @abc.abstractmethod
    def renew_batch(self, batch_id: str, node_id: str, incarnation: str, ttl: float) -> bool:
        """Extend a claim this incarnation holds; False if it is no longer ours."""

    @abc.abstractmethod
    def finish_batch(self, batch_id: str, rows: int) -> None:
        """Record the batch as applied with ``rows`` rows for ``batch_window`` seconds."""

    @abc.abstractmethod
    def release_batch(self, batch_id: str, node_id: str, incarnation: str) -> None:
        """Drop a claim this incarnation holds (the batch failed; a retry may apply it)."""

    # -- leases --------------------------------------------------------------------------
    @abc.abstractmethod
    def acquire_lease(self, name: str, owner: str, ttl: float) -> bool:
        """Take the lease ``name`` for ``ttl`` seconds unless another owner holds a live one."""

    @abc.abstractmethod
    def renew_lease(self, name: str, owner: str, ttl: float) -> bool:
        """Extend a lease ``owner`` holds; False if it expired or another owner holds it now."""

    @abc.abstractmethod
    def release_lease(self, name: str, owner: str) -> None:
        """Drop the lease if ``owner`` holds it (anyone else's lease is left alone)."""

    @abc.abstractmethod
    def lease_holder(self, name: str) -> str | None:
        """The owner of the live lease ``name``, or None."""

    # -- counters ----------------------------------------------------------------------
    @abc.abstractmethod
    def next_sequence(self, name: str, count: int = 1) -> int:
        """Atomically add ``count`` to counter ``name``; returns the new value (first is 1)."""

    # -- nodes -------------------------------------------------------------------------
    @abc.abstractmethod
    def register_node(self, node: NodeInfo, ttl: float) -> None:
        """Register or heartbeat a node; it stays live for ``ttl`` seconds."""

    @abc.abstractmethod
    def unregister_node(self, node_id: str) -> None: ...

    @abc.abstractmethod
    def live_nodes(self) -> list[NodeInfo]:
        """Nodes whose last heartbeat is younger than their TTL, sorted by id."""

    # -- snapshot ----------------------------------------------------------------------
    @abc.abstractmethod
    def snapshot(self) -> dict:
        """JSON-able copy of all metadata: tables, manifests, versions, watermarks, counters."""

    @abc.abstractmethod
    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """Replace all metadata (nodes excepted) by ``snapshot`` atomically."""

    # -- lifecycle ---------------------------------------------------------------------
    @abc.abstractmethod
    def check(self) -> None:
        """Health check; raises Unavailable."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


# -- encoding helpers shared by backends ---------------------------------------------------
def schema_to_b64(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def schema_from_b64(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))

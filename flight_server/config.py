"""Frozen node settings: defaults < YAML file (``--config``) < ``MINIODB_*`` env < CLI flags.

Every leaf has one dotted path (``storage.minio.endpoint``) and one environment variable,
made by upper-casing the path and joining with ``_`` (``MINIODB_STORAGE_MINIO_ENDPOINT``).
A few historical spellings are accepted as aliases (``MINIODB_REDIS_SENTINEL_ADDERS``).
Any variable may instead name a file holding the value, for Docker and Kubernetes secrets:
``MINIODB_<SECTION>_<KEY>_FILE`` (``MINIODB_STORAGE_MINIO_SECRET_KEY_FILE=/run/secrets/s3``); the
trailing newline is stripped, and a list (``server.api_keys``) is split on commas or newlines.
An unknown YAML key or a malformed value raises :class:`ConfigError` naming the key.
This is the only module that reads ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .config_values import coerce_value


class ConfigError(ValueError):
    """A setting is unknown or malformed; the message names the key."""


@dataclass(frozen=True)
class ServerSettings:
    node_id: str = ""  # empty: derived from the host name at start
    host: str = "0.0.0.0"
    advertise_host: str = ""  # address peers and clients use; empty: derived from host
    grpc_port: int = 8080
    rest_port: int = 8081
    metrics_port: int = 9090
    data_dir: str = "./data"
    auth_enabled: bool = False
    api_keys: tuple[str, ...] = ()
    tls_enabled: bool = False
    tls_cert_file: str = ""
    tls_key_file: str = ""
    max_request_bytes: int = 64 * 1024 * 1024
    log_level: str = "INFO"
    drain_delay: float = 5.0  # SIGTERM: seconds not-ready before listeners close (load balancers notice)
    drain_timeout: float = 30.0  # SIGTERM: most seconds in-flight calls get to finish before the flush


@dataclass(frozen=True)
class MinioSettings:
    endpoint: str = ""  # empty: embedded local folder storage under data_dir
    access_key: str = ""
    secret_key: str = ""
    bucket: str = "miniodb-data"
    use_ssl: bool = False
    region: str = ""
    ca_file: str = ""


@dataclass(frozen=True)
class StorageSettings:
    path: str = ""  # local backend root; empty: {data_dir}/objects
    minio: MinioSettings = field(default_factory=MinioSettings)
    retry_attempts: int = 6
    retry_max_seconds: float = 8.0


@dataclass(frozen=True)
class SentinelSettings:
    enabled: bool = False
    master_name: str = "mymaster"
    addrs: tuple[str, ...] = ()
    password: str = ""


@dataclass(frozen=True)
class RedisSettings:
    host: str = ""  # empty (and sentinel off): embedded SQLite metadata
    port: int = 6379
    password: str = ""
    db: int = 0
    prefix: str = "miniodb"
    sentinel: SentinelSettings = field(default_factory=SentinelSettings)
    socket_timeout: float = 5.0


@dataclass(frozen=True)
class BufferSettings:
    size: int = 1_000_000  # rows per table before a flush
    flush_interval: float = 60.0  # seconds
    max_bytes: int = 256 * 1024 * 1024  # in-memory bytes per table before a flush (x2: writers spill/wait)
    # bytes of buffered rows (all tables) read from their memory-mapped WAL segments instead of
    # held in memory, before writers wait for the flusher; 0: never spill (see buffer.py)
    max_spill_bytes: int = 8 * 1024**3


@dataclass(frozen=True)
class WalSettings:
    sync: str = "always"  # always | none
    dir: str = ""  # empty: {data_dir}/wal
    chunk_bytes: int = 128 * 1024 * 1024  # a DoPut commits in chunks of this size
    recycle_bytes: int = 512 * 1024 * 1024  # persisted segment files kept for reuse (0: delete)
    mirror: str = "off"  # off | object_store: segments also in the object store before the ack


@dataclass(frozen=True)
class IngestSettings:
    dedup_window: float = 86_400.0  # seconds a batch id (x-miniodb-batch-id, Idempotency-Key) is remembered
    dedup_claim_ttl: float = 10.0  # an in-flight claim of a batch id lives this long unless renewed
    dedup_wait: float = 300.0  # most seconds a duplicate waits for the original's outcome


@dataclass(frozen=True)
class QuerySettings:
    cache_enabled: bool = False
    cache_distributed: bool = False
    cache_max_bytes: int = 256 * 1024 * 1024
    cache_entry_max_bytes: int = 16 * 1024 * 1024
    file_cache_bytes: int = 4 * 1024 * 1024 * 1024
    file_cache_dir: str = ""  # empty: {data_dir}/cache
    threads: int = 0  # 0: DuckDB default (all cores)
    memory_limit: str = ""  # e.g. "4GB"; empty: DuckDB default
    batch_rows: int = 262144  # most rows per result batch; fewer when a batch would pass max_batch_bytes
    max_batch_bytes: int = 4 * 1024 * 1024
    hot_table_bytes: int = 64 * 1024 * 1024  # tables with at most this much Parquet (LZ4; ~3M narrow rows) are also kept in memory
    hot_cache_bytes: int = 256 * 1024 * 1024  # memory for those copies in all (0: off)


@dataclass(frozen=True)
class CoordinatorSettings:
    enabled: bool = True  # false: every node answers from its own view only (as mode local)
    mode: str = "distributed"  # distributed (server mode: Redis metadata) | local; embedded is always local
    peer_timeout: float = 30.0  # seconds a peer has to pin or to deliver a fragment before it is dropped
    max_parallel: int = 8  # peer calls in flight per query
    pin_ttl: float = 300.0  # seconds a peer keeps a query's pinned buffer rows if never released
    cluster_secret: str = ""  # signs internal calls; empty: derived from the first API key / the deployment
    multi_endpoint: bool = False  # plain scans answer one FlightInfo endpoint per node (coordinator/endpoints.py)
    # below this many bytes of committed Parquet in the tables a query reads, the coordinator reads
    # every file itself and peers only contribute their buffered rows (coordinator/coordinator.py)
    distribute_min_bytes: int = 64 * 1024 * 1024
    inline_max_rows: int = 65536  # a peer's buffered rows up to this many travel in its pin answer


@dataclass(frozen=True)
class MetadataSettings:
    backup_enabled: bool = False
    backup_interval: float = 3600.0
    backup_retention_days: int = 30
    node_ttl: float = 15.0


@dataclass(frozen=True)
class TableDefaults:
    retention_days: int = 0  # 0: keep forever
    auto_create: bool = True


@dataclass(frozen=True)
class CompactionSettings:
    enabled: bool = True  # the background compactor (``miniodb compact`` works either way)
    interval_seconds: float = 300.0  # seconds between background passes over every table
    target_file_bytes: int = 256 * 1024 * 1024  # merged files are about this big (Parquet bytes)
    min_file_age_seconds: float = 60.0  # only files committed at least this long ago are merged
    min_files: int = 10  # a day partition is compacted once it holds this many small files


@dataclass(frozen=True)
class SnapshotSettings:
    """Table versions (time travel, restore-table) and the vacuum (flight_server/vacuum.py)."""

    retention_versions: int = 100  # versions kept per table (the newest is always kept)
    retention_seconds: float = 86_400.0  # ... and only those committed within this age (0: no age limit)
    grace_seconds: float = 300.0  # an unreferenced object is deleted this long after its removal commit
    vacuum_interval: float = 300.0  # seconds between vacuum runs on each node (0: only `miniodb vacuum`)


@dataclass(frozen=True)
class DebugSettings:
    crash_at: str = ""  # tests only: a flush step where the node kills itself (flight_server/faults.py)


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    buffer: BufferSettings = field(default_factory=BufferSettings)
    wal: WalSettings = field(default_factory=WalSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    query: QuerySettings = field(default_factory=QuerySettings)
    coordinator: CoordinatorSettings = field(default_factory=CoordinatorSettings)
    metadata: MetadataSettings = field(default_factory=MetadataSettings)
    tables: TableDefaults = field(default_factory=TableDefaults)
    compaction: CompactionSettings = field(default_factory=CompactionSettings)
    snapshot: SnapshotSettings = field(default_factory=SnapshotSettings)
    debug: DebugSettings = field(default_factory=DebugSettings)

    # -- derived locations -------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return Path(self.server.data_dir).expanduser().resolve()

    @property
    def wal_dir(self) -> Path:
        return Path(self.wal.dir).resolve() if self.wal.dir else self.data_dir / "wal"

    @property
    def cache_dir(self) -> Path:
        return Path(self.query.file_cache_dir).resolve() if self.query.file_cache_dir else self.data_dir / "cache"

    @property
    def object_store_url(self) -> str:
        m = self.storage.minio
        if m.endpoint:
            scheme = "s3s" if m.use_ssl else "s3"
            return f"{scheme}://{m.endpoint}/{m.bucket}"
        root = Path(self.storage.path).resolve() if self.storage.path else self.data_dir / "objects"
        return f"file://{root}"

    @property
    def metadata_url(self) -> str:
        r = self.redis
        if r.sentinel.enabled:
            return f"redis+sentinel://{','.join(r.sentinel.addrs)}/{r.sentinel.master_name}/{r.db}"
        if r.host:
            return f"redis://{r.host}:{r.port}/{r.db}"
        return f"sqlite://{self.data_dir / 'metadata.sqlite3'}"


ENV_PREFIX = "MINIODB_"
ENV_ALIASES = {"MINIODB_REDIS_SENTINEL_ADDERS": "redis.sentinel.addrs"}


def leaf_paths(cls: type = Settings, prefix: str = "") -> dict[str, type]:
    """Every settable dotted path with its annotated type."""
    out: dict[str, type] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out.update(leaf_paths(tp, path + "."))
        else:
            out[path] = tp
    return out


def env_name(path: str) -> str:
    return ENV_PREFIX + path.replace(".", "_").upper()


def _coerce(path: str, tp: Any, value: Any) -> Any:
    """Convert a YAML/env/CLI value to the field type, or raise ConfigError naming ``path``."""
    try:
        return coerce_value(path, tp, value)
    except ValueError as exc:
        raise ConfigError(f"setting {path!r}: {exc}") from exc


def _flatten_yaml(data: Mapping[str, Any], known: dict[str, type], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    sections = {p.rsplit(".", 1)[0] for p in known if "." in p}
    sections |= {".".join(p.split(".")[:i]) for p in known for i in range(1, p.count(".") + 1)}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if path in known:
            out[path] = value
        elif path in sections:
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise ConfigError(f"setting {path!r}: expected a mapping, got {type(value).__name__}")
            out.update(_flatten_yaml(value, known, path + "."))
        else:
            raise ConfigError(f"unknown setting {path!r}")
    return out


def _build(cls: type, values: dict[str, Any], prefix: str = ""):
    kwargs = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            kwargs[f.name] = _build(tp, values, path + ".")
        elif path in values:
            kwargs[f.name] = values[path]
    return cls(**kwargs)


def load_settings(
    config_file: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build :class:`Settings` from defaults, a YAML file, the environment and overrides.

    ``overrides`` are dotted paths (``{"server.grpc_port": 0}``); ``None`` values are ignored so
    CLI flags that were not given do not override anything.
    """
    known = leaf_paths()
    values: dict[str, Any] = {}
    if config_file:
        p = Path(config_file)
        try:
            text = p.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {str(p)!r}: {exc.strerror}") from exc
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {str(p)!r} is not valid YAML: {exc}") from exc
        if not isinstance(data, Mapping):
            raise ConfigError(f"config file {str(p)!r} must hold a mapping at the top level")
        for path, raw in _flatten_yaml(data, known).items():
            values[path] = _coerce(path, known[path], raw)
    env = os.environ if environ is None else environ
    for alias, path in ENV_ALIASES.items():
        if alias in env and env_name(path) not in env:
            values[path] = _coerce(alias, known[path], env[alias])
    for path, tp in known.items():
        name = env_name(path)
        if name in env:
            values[path] = _coerce(name, tp, env[name])
    for path, raw in _env_files(env, known).items():
        values[path] = _coerce(env_name(path) + FILE_SUFFIX, known[path], raw)
    for path, raw in (overrides or {}).items():
        if raw is None:
            continue
        if path not in known:
            raise ConfigError(f"unknown setting {path!r}")
        values[path] = _coerce(path, known[path], raw)
    settings = _build(Settings, values)
    _validate(settings)
    return settings


FILE_SUFFIX = "_FILE"


def _file_paths(known: Mapping[str, type]) -> dict[str, str]:
    """``MINIODB_..._FILE`` variable -> the setting it reads (not when that name is a setting itself)."""
    names = {env_name(p) for p in known}
    return {env_name(p) + FILE_SUFFIX: p for p in known if env_name(p) + FILE_SUFFIX not in names}


def _env_files(env: Mapping[str, str], known: Mapping[str, type]) -> dict[str, Any]:
    """Settings read from the files that ``MINIODB_<SECTION>_<KEY>_FILE`` variables name."""
    out: dict[str, Any] = {}
    for var, path in _file_paths(known).items():
        if var not in env:
            continue
        if env_name(path) in env:
            raise ConfigError(f"both {env_name(path)} and {var} are set; give only one")
        try:
            text = Path(env[var]).read_text()
        except OSError as exc:
            raise ConfigError(f"{var}: cannot read {env[var]!r}: {exc.strerror}") from exc
        text = text.rstrip("\r\n")
        if typing.get_origin(known[path]) is tuple:
            out[path] = [p.strip() for p in re.split(r"[,\r\n]", text) if p.strip()]
        else:
            out[path] = text
    return out


# MINIODB_* names that are not node settings: the client commands' (clients/cli.py, bench),
# the standalone gateway's, the test suite's, and what Kubernetes injects for a Service named
# "miniodb" (MINIODB_PORT, MINIODB_PORT_8080_TCP_ADDR, MINIODB_SERVICE_HOST, ...), and
# deploy/haproxy/haproxy.cfg's (MINIODB_LB_*, MINIODB_BACKEND_*).
ENV_OTHERS = frozenset({"MINIODB_URI", "MINIODB_TOKEN", "MINIODB_USERNAME", "MINIODB_PASSWORD"})
ENV_OTHER_PREFIXES = ("MINIODB_TLS_", "MINIODB_GATEWAY_", "MINIODB_PORT", "MINIODB_SERVICE_", "MINIODB_TEST_",
                      "MINIODB_FUZZ_", "MINIODB_BENCH_", "MINIODB_LB_", "MINIODB_BACKEND_")


def unknown_env(environ: Mapping[str, str] | None = None) -> list[tuple[str, str | None]]:
    """``MINIODB_*`` variables that configure nothing (typos), each with the closest known name."""
    import difflib

    env = os.environ if environ is None else environ
    paths = leaf_paths()
    known = {env_name(p) for p in paths} | set(ENV_ALIASES) | set(_file_paths(paths))
    out = []
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name in known or name in ENV_OTHERS:
            continue
        if name.startswith(ENV_OTHER_PREFIXES):
            continue
        close = difflib.get_close_matches(name, sorted(known | ENV_OTHERS), n=1, cutoff=0.75)
        out.append((name, close[0] if close else None))
    return out


def unknown_env_message(environ: Mapping[str, str] | None = None) -> str | None:
    """One log line naming the unknown ``MINIODB_*`` variables, or ``None`` when there are none."""
    unknown = unknown_env(environ)
    if not unknown:
        return None
    names = ", ".join(f"{n} (did you mean {c}?)" if c else n for n, c in unknown)
    return f"ignoring unknown environment variables: {names}"


def _validate(s: Settings) -> None:
    def bad(path: str, why: str):
        raise ConfigError(f"setting {path!r}: {why}")

    for path, port in (("server.grpc_port", s.server.grpc_port), ("server.rest_port", s.server.rest_port),
                       ("server.metrics_port", s.server.metrics_port)):
        if not 0 <= port <= 65535:
            bad(path, f"port {port} out of range 0..65535")
    for path, value in (("server.drain_delay", s.server.drain_delay),
                        ("server.drain_timeout", s.server.drain_timeout)):
        if value < 0:
            bad(path, "must be zero or more seconds")
    if s.buffer.size <= 0:
        bad("buffer.size", "must be positive")
    if s.buffer.flush_interval <= 0:
        bad("buffer.flush_interval", "must be positive")
    if s.buffer.max_bytes <= 0:
        bad("buffer.max_bytes", "must be positive")
    if s.buffer.max_spill_bytes < 0:
        bad("buffer.max_spill_bytes", "must be zero (no spilling) or more bytes")
    for path, value in (("ingest.dedup_window", s.ingest.dedup_window),
                        ("ingest.dedup_claim_ttl", s.ingest.dedup_claim_ttl), ("ingest.dedup_wait", s.ingest.dedup_wait)):
        if value <= 0:
            bad(path, "must be positive")
    c = s.compaction
    if c.interval_seconds <= 0:
        bad("compaction.interval_seconds", "must be positive")
    if c.target_file_bytes < 1024 * 1024:
        bad("compaction.target_file_bytes", "must be at least 1 MiB")
    if c.min_file_age_seconds < 0:
        bad("compaction.min_file_age_seconds", "must be zero or more seconds")
    if c.min_files < 2:
        bad("compaction.min_files", "must be at least 2")
    if s.wal.sync not in ("always", "none"):
        bad("wal.sync", f"must be 'always' or 'none', not {s.wal.sync!r}")
    if s.wal.mirror not in ("off", "object_store"):
        bad("wal.mirror", f"must be 'off' or 'object_store' (quoted in YAML), not {s.wal.mirror!r}")
    if s.coordinator.mode not in ("local", "distributed"):
        bad("coordinator.mode", f"must be 'local' or 'distributed', not {s.coordinator.mode!r}")
    if s.server.tls_enabled and not (s.server.tls_cert_file and s.server.tls_key_file):
        bad("server.tls_enabled", "needs server.tls_cert_file and server.tls_key_file")
    if s.server.auth_enabled and not s.server.api_keys:
        bad("server.auth_enabled", "needs at least one key in server.api_keys")
    if s.redis.sentinel.enabled and not s.redis.sentinel.addrs:
        bad("redis.sentinel.addrs", "needs at least one host:port when sentinel is enabled")
    if s.storage.minio.endpoint and not s.storage.minio.bucket:
        bad("storage.minio.bucket", "must be set with storage.minio.endpoint")

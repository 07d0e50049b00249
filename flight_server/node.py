"""Node assembly and lifecycle: ordered start (stores -> catalog -> WAL replay -> flusher ->
listeners -> registry) and ordered shutdown (listeners -> flush everything -> stores)."""

from __future__ import annotations

import datetime as dt
import logging
import socket
import threading
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pyarrow as pa

from clients import protocol
from clients.errors import InvalidRequest, MinioDBError, NotFound

from . import auth
from .backup import BackupService
from .buffer import BufferManager
from .cache import FileCache
from .catalog import Catalog
from .config import Settings
from .faults import CrashPoints
from .flightsql.errors import translate as translate_error
from .flightsql.server import MinioFlightServer
from .http import HttpListener
from .ingest import Ingestor, IngestResult
from .malloc import IdleTrimmer
from .metadata import load_metadata_store
from .metadata.base import NodeInfo, TableConfig
from .metrics import HttpMetrics, Metrics
from .paths import NODE_ID
from .persist import Flusher, FlushResult
from .query.engine import QueryEngine, QueryResult
from .query.resolve import TableResolver
from .query.runner import QueryRunner
from .query.system import SystemTables
from .querylog import QueryLog
from .result_cache import RedisSharedCache, ResultCache
from .retention import RetentionSweeper
from .storage import load_object_store
from .wal import WriteAheadLog

log = logging.getLogger("miniodb.node")


def package_version() -> str:
    try:
        return version("miniodb")
    except PackageNotFoundError:
        return "0.0.0"


def _advertise_host(settings: Settings) -> str:
    """The host peers and clients should dial: the configured one, else this machine's name."""
    if settings.server.advertise_host:
        return settings.server.advertise_host
    host = settings.server.host
    return socket.gethostname() if host in ("0.0.0.0", "::", "") else host


class Node:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.version = package_version()
        node_id = settings.server.node_id or socket.gethostname().split(".")[0] or "node"
        if not NODE_ID.match(node_id):
            raise InvalidRequest(f"invalid node id {node_id!r}")
        self.node_id = node_id
        self.started_at = time.time()
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        self.flight: MinioFlightServer | None = None
        self.rest: Any = None  # gateway.server.GatewayServer
        self.metrics_http: HttpListener | None = None
        self.addresses: dict[str, str] = {}
        self._schemas: dict[tuple, pa.Schema] = {}  # query_schema cache (see there)
        self._schemas_lock = threading.Lock()

    # -- start ---------------------------------------------------------------------------
    def start(self) -> Node:
        s = self.settings
        data = s.data_dir
        data.mkdir(parents=True, exist_ok=True)
        self.metrics = Metrics(self.version, self.node_id)
        self.store = load_object_store(s.object_store_url, s.storage)
        self.store.check()
        self.metadata = load_metadata_store(s.metadata_url, settings=s.redis)
        self.metadata.check()
        self.catalog = Catalog(self.metadata)
        self.backups = BackupService(self.metadata, self.store, retention_days=s.metadata.backup_retention_days,
                                     node_id=self.node_id, version=self.version)
        self.wal = WriteAheadLog(s.wal_dir, sync=s.wal.sync == "always",
                                 recycle_bytes=s.wal.recycle_bytes)
        self.buffers = BufferManager(s.buffer.size, s.buffer.flush_interval, s.buffer.max_bytes)
        self.file_cache = FileCache(self.store, s.cache_dir, s.query.file_cache_bytes)
        crash = CrashPoints(s.debug.crash_at)
        self.wal.fault = crash
        self.flusher = Flusher(self.node_id, self.catalog, self.store, self.wal, self.buffers, self.file_cache,
                               data / "tmp", on_flushed=self._on_flushed, faults=crash)
        self.ingestor = Ingestor(self.node_id, self.catalog, self.store, self.wal, self.buffers,
                                 chunk_bytes=s.wal.chunk_bytes, auto_create=s.tables.auto_create,
                                 on_appended=self._on_appended, on_dropped=self._on_dropped,
                                 retire_objects=self._retire_objects)
        allowed = [str(s.cache_dir)]
        local_root = self.store.local_path("x")
        if local_root is not None or s.object_store_url.startswith("file://"):
            allowed.append(s.object_store_url[len("file://"):])
        (data / "spill").mkdir(exist_ok=True)
        self.engine = QueryEngine(allowed, threads=s.query.threads, memory_limit=s.query.memory_limit,
                                  batch_rows=s.query.batch_rows, temp_dir=str(data / "spill"),
                                  max_batch_bytes=s.query.max_batch_bytes,
                                  hot_table_bytes=s.query.hot_table_bytes, hot_cache_bytes=s.query.hot_cache_bytes)
        self.resolver = TableResolver(self.catalog, self.buffers, self.file_cache, self.engine)
        self._start_observability()
        self.ingestor.load_tables()
        replayed = self.ingestor.replay(lambda table, table_id: self.metadata.get_watermark(self.node_id, table_id))
        if replayed:
            log.info("replayed %d rows from the WAL", replayed)
        self.flusher.start()
        self.retention = RetentionSweeper(self.catalog, self.store, s.tables.retention_days,
                                          on_removed=self._on_dropped)
        self.retention.start()
        # memory freed by flushes goes back to the OS once ingest has been quiet a while
        self.trimmer = IdleTrimmer(lambda: (self.ingestor.bytes_total, self.buffers.total_bytes())).start()
        self._start_listeners()
        self._registry_thread = threading.Thread(target=self._heartbeat, name="miniodb-registry", daemon=True)
        self._heartbeat_once()
        self._registry_thread.start()
        self._backup_thread = threading.Thread(target=self._maintenance, name="miniodb-backup", daemon=True)
        self._backup_thread.start()
        self.metrics.up.set(1)
        log.info("node %s serving flight=%s rest=%s metrics=%s", self.node_id, self.addresses.get("flight"),
                 self.addresses.get("rest"), self.addresses.get("metrics"))
        return self

    def _start_observability(self) -> None:
        """API keys, the query log, the result cache, system tables and the query runner."""
        s = self.settings
        self.api_keys = auth.ApiKeys(s.server.api_keys) if s.server.auth_enabled else None
        self.metrics.bind_file_cache(lambda: self.file_cache.hits, lambda: self.file_cache.misses)
        self.querylog = QueryLog(self.node_id)
        self.result_cache: ResultCache | None = None
        if s.query.cache_enabled:
            shared = None
            if s.query.cache_distributed:
                shared = RedisSharedCache.from_metadata_url(s.metadata_url, s.redis)
                if shared is None:
                    log.warning("query.cache_distributed needs Redis metadata; the result cache stays local")
            self.result_cache = ResultCache(s.query.cache_max_bytes, s.query.cache_entry_max_bytes, shared)
        self.engine.system_tables = SystemTables(self, auth.current_principal, masked=self.api_keys is not None)
        self.runner = QueryRunner(self.engine, self.resolver, self.catalog, self.buffers, self.querylog,
                                  self.metrics, self.result_cache, scope=auth.current_scope,
                                  translate=translate_error)

    def _auth_failed(self) -> None:
        self.metrics.errors.labels(code="unauthenticated").inc()

    def _ssl_context(self):
        import ssl

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.settings.server.tls_cert_file, self.settings.server.tls_key_file)
        return ctx

    def _start_listeners(self) -> None:
        s = self.settings
        host = s.server.host
        adv = _advertise_host(s)
        scheme = "grpc+tls" if s.server.tls_enabled else "grpc"
        certs = []
        if s.server.tls_enabled:
            certs = [(Path(s.server.tls_cert_file).read_bytes(), Path(s.server.tls_key_file).read_bytes())]
        self.flight = MinioFlightServer(f"{scheme}://{host}:{s.server.grpc_port}", self,
                                        tls_certificates=certs, auth_handler=auth.HandshakeAcceptor(),
                                        middleware={"call": auth.CallMiddlewareFactory(
                                            self.api_keys, on_failure=self._auth_failed)})
        self.addresses["flight"] = f"{scheme}://{adv}:{self.flight.port}"
        http_scheme = "https" if s.server.tls_enabled else "http"
        self.rest = self._start_gateway(host, adv)
        self.addresses["rest"] = f"{http_scheme}://{adv}:{self.rest.port}"
        self.metrics_http = HttpListener(host, s.server.metrics_port, {"/metrics": self._http_metrics},
                                         ssl_context=self._ssl_context() if s.server.tls_enabled else None)
        self.metrics_http.start()
        self.addresses["metrics"] = f"{http_scheme}://{adv}:{self.metrics_http.port}"
        self._flight_thread = threading.Thread(target=self.flight.serve, name="miniodb-flight", daemon=True)
        self._flight_thread.start()

    def _start_gateway(self, host: str, adv: str):
        """The REST gateway (uvicorn in a thread) on the REST port: a Flight client of this node."""
        from gateway.app import GatewayConfig, create_app
        from gateway.server import GatewayServer

        s = self.settings.server
        if s.tls_enabled:
            flight_uri, roots = self.addresses["flight"], Path(s.tls_cert_file).read_bytes()
        else:
            local = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
            flight_uri, roots = f"grpc://{'[' + local + ']' if ':' in local else local}:{self.flight.port}", None
        config = GatewayConfig(flight_uri=flight_uri, max_body_bytes=s.max_request_bytes, tls_root_certs=roots,
                               service_token=s.api_keys[0] if s.auth_enabled and s.api_keys else None)
        level = "info" if s.log_level.upper() == "DEBUG" else "warning"
        app = create_app(config)
        wrapped = app if self.api_keys is None else auth.RestAuth(app, self.api_keys, on_failure=self._auth_failed)
        wrapped = HttpMetrics(wrapped, self.metrics, [getattr(r, "path", "") for r in app.routes])
        return GatewayServer(config, host, s.rest_port, log_level=level,
                             ssl_certfile=s.tls_cert_file if s.tls_enabled else None,
                             ssl_keyfile=s.tls_key_file if s.tls_enabled else None, app=wrapped).start()

    def _http_metrics(self) -> tuple[int, str, bytes]:
        self._refresh_gauges()
        return 200, self.metrics.content_type, self.metrics.render()

    def _refresh_gauges(self) -> None:
        self.metrics.wal_bytes.set(self.wal.total_bytes)
        rows = {}
        for name in self.buffers.names():
            buf = self.buffers.get(name)
            rows[name] = buf.rows if buf else 0
        self.metrics.set_buffer_rows(rows)
        if self.result_cache is not None:
            self.metrics.query_cache_bytes.set(self.result_cache.bytes)
            self.metrics.query_cache_entries.set(len(self.result_cache))

    # -- registry ------------------------------------------------------------------------
    def node_info(self) -> NodeInfo:
        return NodeInfo(node_id=self.node_id, flight_uri=self.addresses.get("flight", ""), version=self.version,
                        started_at=self.started_at, rest_uri=self.addresses.get("rest", ""),
                        metrics_uri=self.addresses.get("metrics", ""))

    def _heartbeat_once(self) -> None:
        try:
            self.metadata.register_node(self.node_info(), ttl=self.settings.metadata.node_ttl)
            self.metrics.live_nodes.set(len(self.metadata.live_nodes()))
        except MinioDBError as exc:
            log.warning("heartbeat failed: %s", exc)

    def _heartbeat(self) -> None:
        interval = max(0.5, self.settings.metadata.node_ttl / 3)
        while not self._stopped.wait(interval):
            self._heartbeat_once()

    # -- metadata backups ----------------------------------------------------------------
    def _maintenance(self) -> None:
        """Periodic metadata backup (when enabled) and deletion of expired retired objects."""
        m = self.settings.metadata
        interval = m.backup_interval if m.backup_enabled else 3600.0
        while not self._stopped.wait(interval):
            try:
                if m.backup_enabled:
                    age = self.backups.latest_age()
                    if age is None or age >= 0.9 * m.backup_interval:  # another node may just have done it
                        self.backups.backup()
                self.backups.purge_trash()
            except MinioDBError as exc:
                log.warning("metadata backup failed: %s", exc)

    def _retire_objects(self, name: str, keys: list[str]) -> None:
        try:
            self.backups.retire(name, keys)
        except MinioDBError as exc:  # the table is dropped; an orphan object costs space only
            log.warning("objects of dropped table %s not deleted: %s", name, exc)

    def _after_restore(self) -> None:
        """Cached manifests and the live-table map must follow the restored metadata."""
        self.catalog.invalidate_all()
        self.ingestor.reload_tables()
        if self.result_cache is not None:
            self.result_cache.clear()  # not needed for exactness (versions only move forward): memory

    def _restore(self, body: dict) -> dict:
        for flag in ("from_latest", "dry_run"):
            if not isinstance(body.get(flag, False), bool):
                raise InvalidRequest(f"{flag} must be true or false")
        return self.backups.restore(from_latest=body.get("from_latest", False), backup_file=body.get("backup_file"),
                                    dry_run=body.get("dry_run", False), on_restored=self._after_restore)

    # -- callbacks -----------------------------------------------------------------------
    def _on_appended(self, name: str) -> None:
        if name in self.buffers.due():
            self.flusher.request()

    def _on_dropped(self, name: str, keys: list[str]) -> None:
        self.file_cache.discard(keys)
        self.engine.hot.forget(name)

    def _on_flushed(self, result: FlushResult) -> None:
        self.metrics.flush_duration.observe(result.seconds)
        self.metrics.objects_written.inc(result.files)

    # -- API used by the Flight server ---------------------------------------------------
    def query(self, sql: str, params: Any = None) -> QueryResult:
        """Run a SELECT: result cache, query log, metrics and statistics (query/runner.py)."""
        return self.runner.run(sql, params)

    def ingest(self, table: str, batches, schema: pa.Schema, mode: str, batch_id: str = "") -> IngestResult:
        started = time.perf_counter()
        try:
            result = self.ingestor.ingest(table, batches, schema, mode, batch_id)
        except MinioDBError as exc:
            self.metrics.errors.labels(code=exc.code).inc()
            raise
        self.metrics.ingest_rows.labels(table=result.table).inc(result.rows)
        self.metrics.ingest_bytes.labels(table=result.table).inc(result.bytes)
        log.debug("ingest %s: %d rows, %d bytes in %.1f ms", result.table, result.rows, result.bytes,
                  (time.perf_counter() - started) * 1000)
        return result

    def execute_update(self, sql: str, params: pa.Table | None = None) -> int:
        """Run DDL/DML (CREATE/DROP TABLE, INSERT) once per parameter row; rows affected."""
        from .flightsql.dml import UpdateExecutor

        try:
            return UpdateExecutor(self).execute(sql, params)
        except MinioDBError as exc:
            self.metrics.errors.labels(code=exc.code).inc()
            raise

    def query_schema(self, sql: str, params: Any = None) -> pa.Schema:
        """Result schema of a query without reading data: its tables bind empty.

        Cached by statement and the (table id, schema version) of every table it reads: a
        schema only changes with them, and clients prepare the same statements again and again.
        """
        key = None
        if params is None:
            st = self.runner.statement(sql)
            if st.cacheable and st.digest:
                versions = []
                for name in st.tables:
                    info = self.catalog.find(name)
                    if info is None:
                        break
                    versions.append((info.table_id, info.schema_version))
                else:
                    key = (st.digest, tuple(versions))
                    cached = self._schemas.get(key)
                    if cached is not None:
                        return cached
        result = self.engine.execute(sql, params, lambda name, sets: self.resolver(
            name, sets, files=(), include_buffer=False), schema_only=True)
        try:
            schema = result.schema
        finally:
            result.close()
        if key is not None:
            with self._schemas_lock:
                if len(self._schemas) >= 4096:
                    self._schemas.pop(next(iter(self._schemas)))
                self._schemas[key] = schema
        return schema

    def sql_tables(self) -> list[tuple[str, str, str, pa.Schema]]:
        """(db_schema, name, table type, Arrow schema) of every table SQL can read (GetTables)."""
        return [("main", t.name, "TABLE", t.schema) for t in self.catalog.list()]

    def flush(self, table: str | None = None) -> list[FlushResult]:
        if table is not None:
            self.catalog.get(table)
            return [self.flusher.flush_table(table)]
        return self.flusher.flush_all()

    def describe(self, name: str) -> dict:
        info = self.catalog.get(name)
        stats = self.catalog.stats(name)
        buf = self.buffers.get(name)
        stats["buffered_rows"] = buf.rows if buf is not None and buf.table_id == info.table_id else 0
        stats["rows_total"] = stats["rows"] + stats["buffered_rows"]
        if info.time_column:
            t = info.schema.field(info.time_column).type
            for k in ("time_min", "time_max"):
                stats[k] = _temporal_iso(stats[k], t)
        defaults = {"buffer_size": self.settings.buffer.size,
                    "flush_interval_seconds": self.settings.buffer.flush_interval,
                    "retention_days": self.settings.tables.retention_days}
        cfg = info.config.to_json()
        effective = {k: (cfg[k] if cfg.get(k) is not None else v) for k, v in defaults.items()}
        return {
            "name": info.name,
            "table_id": info.table_id,
            "schema": [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in info.schema],
            "schema_ipc": protocol.dumps(info.schema.serialize().to_pybytes()).decode().strip('"'),
            "schema_version": info.schema_version,
            "time_column": info.time_column,
            "config": {**effective, "properties": dict(info.config.properties)},
            "stats": stats,
            "created_at": info.created_at,
        }

    def health(self) -> dict:
        checks = {"flight": "ok" if self.flight is not None else "down"}
        for name, probe in (("metadata", self.metadata.check), ("storage", self.store.check)):
            checks[name] = _probe(probe)
        ok = all(v == "ok" for v in checks.values())
        return {"status": "ok" if ok else "degraded", "version": self.version, "node_id": self.node_id,
                "checks": checks}

    def status(self) -> dict:
        buffers = {}
        for name in self.buffers.names():
            buf = self.buffers.get(name)
            if buf is not None:
                buffers[name] = {"rows": buf.rows, "bytes": buf.nbytes, "flushing_rows": sum(e.rows for e in buf.flushing)}
        try:
            nodes = [n.to_json() for n in self.metadata.live_nodes()]
        except MinioDBError as exc:
            nodes = [{"error": exc.message}]
        return {
            "node": {**self.node_info().to_json(), "uptime_seconds": time.time() - self.started_at},
            "buffers": buffers,
            "wal_bytes": self.wal.total_bytes,
            "wal_recycled_bytes": self.wal.free_bytes,
            "file_cache": self.file_cache.stats(),
            "hot_tables": self.engine.hot.stats(),
            "query_cache": self.result_cache.stats() if self.result_cache is not None else {"enabled": False},
            "flush_errors": dict(self.flusher.last_error),
            "checks": {"storage": _probe(self.store.check)},  # e.g. down: a bucket that disappeared
            "nodes": nodes,
            "storage": self.store.url if not self.store.url.startswith("s3") else self.store.url.split("@")[-1],
            "metadata": self.metadata.url.split("@")[-1],
        }

    def action(self, name: str, body: dict) -> Any:
        if name == protocol.ACTION_HEALTH:
            return self.health()
        if name == protocol.ACTION_STATUS:
            return self.status()
        if name == protocol.ACTION_FLUSH:
            table = body.get("table")
            results = self.flush(table)
            return {"flushed": [r.__dict__ for r in results if r.rows],
                    "rows": sum(r.rows for r in results), "files": sum(r.files for r in results)}
        if name == protocol.ACTION_LIST_TABLES:
            tables = self.catalog.list(body.get("pattern"))
            return {"tables": [{"name": t.name, "columns": len(t.schema), "time_column": t.time_column}
                               for t in tables]}
        if name == protocol.ACTION_DESCRIBE_TABLE:
            return self.describe(_required(body, "name"))
        if name == protocol.ACTION_CREATE_TABLE:
            return self._create_table(body)
        if name == protocol.ACTION_DROP_TABLE:
            dropped = self.ingestor.drop_table(_required(body, "name"), if_exists=bool(body.get("if_exists")))
            return {"dropped": dropped}
        if name == protocol.ACTION_BACKUP_METADATA:
            return self.backups.backup()
        if name == protocol.ACTION_LIST_BACKUPS:
            return {"backups": self.backups.list(body.get("days"))}
        if name == protocol.ACTION_RESTORE_METADATA:
            return self._restore(body)
        raise NotFound(f"action {name!r} is not available on this node")

    def _create_table(self, body: dict) -> dict:
        name = _required(body, "name")
        schema = schema_from_json(body.get("schema"))
        cfg = body.get("config") or {}
        if not isinstance(cfg, dict):
            raise InvalidRequest("config must be an object")
        unknown = set(cfg) - {"buffer_size", "flush_interval_seconds", "retention_days", "properties"}
        if unknown:
            raise InvalidRequest(f"unknown table config keys: {', '.join(sorted(unknown))}")
        config = TableConfig.from_json(cfg)
        info = self.ingestor.create_table(name, schema, config, if_not_exists=bool(body.get("if_not_exists")))
        return self.describe(info.name)

    # -- stop ----------------------------------------------------------------------------
    def stop(self) -> None:
        with self._stop_lock:
            if self._stopped.is_set():
                return
            self._stopped.set()
        self.metrics.up.set(0)
        if self.flight is not None:
            self.flight.shutdown()
        for listener in (self.rest, self.metrics_http):
            if listener is not None:
                listener.stop()
        self.retention.stop()
        self.trimmer.stop()
        self.flusher.stop()
        try:
            self.flusher.flush_all()
        except Exception as exc:  # noqa: BLE001 - the WAL keeps the rows
            log.warning("final flush incomplete, rows stay in the WAL: %s", exc)
        try:
            self.metadata.unregister_node(self.node_id)
        except MinioDBError:
            pass
        self.resolver.close()
        if self.result_cache is not None:
            self.result_cache.close()
        self.engine.close()
        self.metadata.close()
        self.store.close()

    def wait(self) -> None:
        self._stopped.wait()


def _probe(check) -> str:
    """``ok`` or ``down: <reason>`` (reported, never raised)."""
    try:
        check()
        return "ok"
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return f"down: {getattr(exc, 'message', None) or type(exc).__name__}"


def _required(body: dict, key: str) -> Any:
    value = body.get(key)
    if value in (None, ""):
        raise InvalidRequest(f"missing {key!r}")
    return value


_SIMPLE_TYPES = {
    "bool": pa.bool_(), "boolean": pa.bool_(), "int8": pa.int8(), "int16": pa.int16(), "int32": pa.int32(),
    "int64": pa.int64(), "uint8": pa.uint8(), "uint16": pa.uint16(), "uint32": pa.uint32(),
    "uint64": pa.uint64(), "float32": pa.float32(), "float": pa.float32(), "float64": pa.float64(),
    "double": pa.float64(), "string": pa.string(), "utf8": pa.string(), "binary": pa.binary(),
    "date32": pa.date32(), "date": pa.date32(), "timestamp": pa.timestamp("us", tz="UTC"),
    "timestamp[us]": pa.timestamp("us"), "timestamp[ms]": pa.timestamp("ms"), "timestamp[ns]": pa.timestamp("ns"),
    "timestamp[s]": pa.timestamp("s"), "timestamp[us, tz=UTC]": pa.timestamp("us", tz="UTC"),
    "timestamp[ms, tz=UTC]": pa.timestamp("ms", tz="UTC"), "timestamp[ns, tz=UTC]": pa.timestamp("ns", tz="UTC"),
}


def schema_from_json(spec: Any) -> pa.Schema:
    """A schema from ``[{name, type, nullable?}]`` (pyarrow type names) or base64 Arrow IPC."""
    if isinstance(spec, str):
        import base64

        try:
            return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(spec)))
        except (ValueError, OSError, pa.ArrowException) as exc:  # garbage bytes: OSError "Invalid IPC stream"
            raise InvalidRequest("schema: not a base64 Arrow IPC schema") from exc
    if not isinstance(spec, list) or not spec:
        raise InvalidRequest("schema must be a non-empty list of {name, type} objects")
    fields = []
    for col in spec:
        if not isinstance(col, dict) or "name" not in col or "type" not in col:
            raise InvalidRequest("each schema column needs 'name' and 'type'")
        t = _SIMPLE_TYPES.get(str(col["type"]).strip().lower()) or _SIMPLE_TYPES.get(str(col["type"]).strip())
        if t is None:
            raise InvalidRequest(f"column {col['name']!r}: unknown type {col['type']!r}; "
                                 f"use one of {', '.join(sorted(_SIMPLE_TYPES))}")
        fields.append(pa.field(str(col["name"]), t, nullable=bool(col.get("nullable", True))))
    return pa.schema(fields)


def _temporal_iso(raw: Any, t: pa.DataType) -> Any:
    if raw is None:
        return None
    try:
        if pa.types.is_timestamp(t):
            return pa.scalar(raw, pa.int64()).cast(t).as_py().isoformat()
        if pa.types.is_date32(t):
            return (dt.date(1970, 1, 1) + dt.timedelta(days=raw)).isoformat()
    except (ValueError, OverflowError, pa.ArrowInvalid):
        return raw
    return raw

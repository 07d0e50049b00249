"""Node assembly and lifecycle: ordered start (stores -> catalog -> WAL replay -> flusher ->
listeners -> registry) and ordered shutdown (listeners -> flush everything -> stores).

The parts live in their own modules: custom actions and status documents in ``actions.py``,
the heartbeat and backup loops in ``maintenance.py``, TLS material in ``tls.py``. The REST
gateway is not imported here: ``miniodb serve`` (``cli.py``) hands the node a factory for it.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Protocol

import pyarrow as pa

from clients.errors import InvalidRequest, MinioDBError

from . import auth, ports, tls
from .actions import NodeActions
from .adopt import open_wal_mirror
from .backup import BackupService
from .batches import BatchLedger
from .buffer import BufferManager
from .cache import FileCache
from .catalog import Catalog
from .compaction import CompactionResult, Compactor
from .config import Settings, unknown_env_message
from .coordinator.service import ClusterService
from .datadir import DataDirLock
from .dml import UpdateExecutor
from .dml_hooks import cluster_flush, where_constraints
from .faults import CrashPoints
from .flightsql.errors import translate as translate_error
from .flightsql.server import MinioFlightServer
from .http import HttpListener
from .ingest import Ingestor, IngestResult
from .maintenance import Heartbeat, MetadataMaintenance
from .malloc import IdleTrimmer
from .metadata import load_metadata_store
from .metadata.base import NodeInfo
from .metrics import Metrics
from .paths import NODE_ID
from .persist import Flusher, FlushResult
from .query.engine import QueryEngine, QueryResult
from .query.resolve import TableResolver
from .query.runner import QueryRunner
from .query.statement import as_statement
from .query.system import SystemTables
from .querylog import QueryLog
from .result_cache import RedisSharedCache, ResultCache
from .retention import RetentionSweeper
from .rewrite import TableRewriter
from .snapshots import TableHistory
from .storage import load_object_store
from .vacuum import Vacuum
from .wal import WriteAheadLog

log = logging.getLogger("miniodb.node")


def package_version() -> str:
    try:
        return version("miniodb")
    except PackageNotFoundError:
        return "0.0.0"


def _advertise_host(settings: Settings) -> str:
    """The host peers and clients should dial: the configured one, else this machine's name."""
    return ports.advertised_host(settings)


class Listener(Protocol):
    port: int

    def stop(self, timeout: float = ...) -> None: ...


class Node:
    """The node's parts, started and stopped in order. ``rest`` builds the listener of the
    REST port once Flight listens (``miniodb serve`` passes the gateway; none when omitted)."""

    def __init__(self, settings: Settings, rest: Callable[[Node], Listener] | None = None):
        self.settings = settings
        self._make_rest = rest
        self.version = package_version()
        node_id = settings.server.node_id or socket.gethostname().split(".")[0] or "node"
        if not NODE_ID.match(node_id):
            raise InvalidRequest(f"invalid node id {node_id!r}")
        self.node_id = node_id
        self.started_at = time.time()
        self._stopped = threading.Event()
        self.draining = threading.Event()  # SIGTERM: /health/ready answers 503 from now on
        self.wal_replayed = False
        self.flight_stuck = False  # in-flight Flight calls outlived server.drain_timeout at stop
        self._stop_lock = threading.Lock()
        self.flight: MinioFlightServer | None = None
        self.rest: Listener | None = None
        self.metrics_http: HttpListener | None = None
        self.addresses: dict[str, str] = {}
        self.actions = NodeActions(self)

    # -- start ---------------------------------------------------------------------------
    def start(self) -> Node:
        s = self.settings
        data = s.data_dir
        data.mkdir(parents=True, exist_ok=True)
        if (env_typos := unknown_env_message()) is not None:
            log.warning(env_typos)
        self.lock = DataDirLock(data).acquire(flight_port=s.server.grpc_port)  # before anything reads the dir
        ports.check_free(s)
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
        self.buffers = BufferManager(s.buffer.size, s.buffer.flush_interval, s.buffer.max_bytes,
                                     max_spill_bytes=s.buffer.max_spill_bytes, spill_source=self.wal.map_segment)
        self.file_cache = FileCache(self.store, s.cache_dir, s.query.file_cache_bytes)
        crash = self.faults = CrashPoints(s.debug.crash_at)
        self.wal.fault = crash
        self.flusher = Flusher(self.node_id, self.catalog, self.store, self.wal, self.buffers, self.file_cache,
                               data / "tmp", on_flushed=self._on_flushed, faults=crash)
        self.ingestor = Ingestor(self.node_id, self.catalog, self.store, self.wal, self.buffers,
                                 chunk_bytes=s.wal.chunk_bytes, auto_create=s.tables.auto_create,
                                 on_appended=self._on_appended, on_dropped=self._on_dropped,
                                 retire_objects=self._retire_objects,
                                 ledger=BatchLedger(self.metadata, self.node_id, s.ingest.dedup_window,
                                                    s.ingest.dedup_claim_ttl, s.ingest.dedup_wait))
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
        # DELETE/UPDATE: flush the table on every live node first (dml_hooks.py, rewrite.py)
        rewriter = TableRewriter(self.node_id, self.catalog, self.store, self.file_cache, data / "tmp" / "dml",
                                 flush=cluster_flush(self), constraints=where_constraints(), faults=crash)
        self.dml = UpdateExecutor(self.catalog, self.ingestor, query=self.query, ingest=self.ingest,
                                  rewriter=rewriter)
        self.ingestor.load_tables()
        # wal.mirror: restore/upload segments and hook the WAL; holds this node's adoption lease
        self.wal_mirror, self.adopter = open_wal_mirror(s, self.node_id, self.store, self.metadata,
                                                        self.catalog, self.wal)
        replayed = self.ingestor.replay(lambda table, table_id: self.metadata.get_watermark(self.node_id, table_id))
        if replayed:
            log.info("replayed %d rows from the WAL", replayed)
        self.wal_replayed = True
        self.flusher.start()
        self.retention = RetentionSweeper(self.catalog, self.store, s.tables.retention_days,
                                          on_removed=self._on_dropped)
        self.retention.start()
        self.compactor = Compactor(self.node_id, self.catalog, self.store, self.file_cache, s.compaction,
                                   data / "tmp", faults=crash, on_result=self._on_compacted)
        if s.compaction.enabled:
            self.compactor.start()
        self.history = TableHistory(self.catalog, self.metadata, self.store, faults=self.faults)
        self.resolver.history = self.history
        self.engine.time_travel = self.resolver.at
        self.vacuum = Vacuum(self.metadata, s.snapshot, self._retire_objects, on_deleted=self._on_dropped).start()
        # memory freed by flushes goes back to the OS once ingest has been quiet a while
        self.trimmer = IdleTrimmer(lambda: (self.ingestor.bytes_total, self.buffers.total_bytes())).start()
        with ports.bind_errors(s):
            self._start_listeners()
        self.lock.update(addresses=ports.local_addresses(s, self.addresses))
        self.heartbeat = Heartbeat(self.metadata, self.node_info, s.metadata.node_ttl, self._stopped,
                                   on_live=self.metrics.live_nodes.set).start()
        if self.adopter is not None:
            self.adopter.start()  # registered: release our own WAL's lease, adopt dead nodes' WAL
        self.maintenance = MetadataMaintenance(self.backups, s.metadata, self._stopped).start()
        self.metrics.up.set(1)
        log.info("node %s serving; advertised to peers as flight=%s rest=%s metrics=%s", self.node_id, self.addresses.get("flight"),
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
        self.cluster = ClusterService(self)
        self.runner = QueryRunner(self.engine, self.resolver, self.catalog, self.buffers, self.querylog,
                                  self.metrics, self.result_cache, scope=auth.current_scope,
                                  translate=translate_error,
                                  coordinator=self.cluster.coordinator if self.cluster.distributed else None)

    def auth_failed(self) -> None:
        self.metrics.errors.labels(code="unauthenticated").inc()

    def _start_listeners(self) -> None:
        s = self.settings
        host = s.server.host
        adv = _advertise_host(s)
        scheme = "grpc+tls" if s.server.tls_enabled else "grpc"
        self.flight = MinioFlightServer(f"{scheme}://{host}:{s.server.grpc_port}", self,
                                        tls_certificates=tls.flight_certificates(s.server),
                                        auth_handler=auth.HandshakeAcceptor(),
                                        middleware={"call": auth.CallMiddlewareFactory(
                                            self.api_keys, on_failure=self.auth_failed)})
        self.addresses["flight"] = f"{scheme}://{adv}:{self.flight.port}"
        http_scheme = "https" if s.server.tls_enabled else "http"
        if self._make_rest is not None:
            self.rest = self._make_rest(self)
            self.addresses["rest"] = f"{http_scheme}://{adv}:{self.rest.port}"
        self.metrics_http = HttpListener(host, s.server.metrics_port, {"/metrics": self._http_metrics},
                                         ssl_context=tls.server_ssl_context(s.server))
        self.metrics_http.start()
        self.addresses["metrics"] = f"{http_scheme}://{adv}:{self.metrics_http.port}"
        self._flight_thread = threading.Thread(target=self.flight.serve, name="miniodb-flight", daemon=True)
        self._flight_thread.start()

    def _http_metrics(self) -> tuple[int, str, bytes]:
        self._refresh_gauges()
        return 200, self.metrics.content_type, self.metrics.render()

    def _refresh_gauges(self) -> None:
        self.metrics.wal_bytes.set(self.wal.total_bytes)
        self.metrics.buffer_spilled_bytes.set(self.buffers.spilled_bytes())
        rows = {}
        for name in self.buffers.names():
            buf = self.buffers.get(name)
            rows[name] = buf.rows if buf else 0
        self.metrics.set_buffer_rows(rows)
        try:
            files = {}
            for info in self.catalog.list():
                m = self.catalog.manifest(info.name)
                if m is not None:
                    files[info.name] = len(m.files)
            self.metrics.set_table_files(files)
        except MinioDBError as exc:  # the scrape still answers; the gauge keeps its last values
            log.debug("table file counts not refreshed: %s", exc)
        if self.result_cache is not None:
            self.metrics.query_cache_bytes.set(self.result_cache.bytes)
            self.metrics.query_cache_entries.set(len(self.result_cache))

    # -- registry ------------------------------------------------------------------------
    def node_info(self) -> NodeInfo:
        return NodeInfo(node_id=self.node_id, flight_uri=self.addresses.get("flight", ""), version=self.version,
                        started_at=self.started_at, rest_uri=self.addresses.get("rest", ""),
                        metrics_uri=self.addresses.get("metrics", ""))

    def _retire_objects(self, name: str, keys: list[str]) -> None:
        try:
            self.backups.retire(name, keys)
        except MinioDBError as exc:  # the table is dropped; an orphan object costs space only
            log.warning("objects of dropped table %s not deleted: %s", name, exc)

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

    def _on_compacted(self, result: CompactionResult) -> None:
        self.metrics.compaction_runs.labels(outcome=result.outcome).inc()
        if result.merged_files:
            self.metrics.compaction_bytes.inc(result.bytes_before)
            self.metrics.compaction_files.inc(result.merged_files)

    # -- API used by the Flight server ---------------------------------------------------
    def query(self, sql: Any, params: Any = None) -> QueryResult:
        """Run a SELECT (SQL text or its query.statement.Statement): result cache, query log,
        metrics and statistics (query/runner.py)."""
        return self.runner.run(sql, params)

    def ingest(self, table: str, batches, schema: pa.Schema, mode: str, batch_id: str = "") -> IngestResult:
        started = time.perf_counter()
        try:
            result = self.ingestor.ingest(table, batches, schema, mode, batch_id)
        except MinioDBError as exc:
            self.metrics.errors.labels(code=exc.code).inc()
            raise
        if not result.duplicate:  # a retried batch id was applied once, and counted then
            self.metrics.ingest_rows.labels(table=result.table).inc(result.rows)
            self.metrics.ingest_bytes.labels(table=result.table).inc(result.bytes)
        log.debug("ingest %s: %d rows, %d bytes in %.1f ms", result.table, result.rows, result.bytes,
                  (time.perf_counter() - started) * 1000)
        return result

    def execute_update(self, sql: str, params: pa.Table | None = None) -> int:
        """Run DDL/DML (CREATE/DROP TABLE, INSERT, DELETE, UPDATE) once per parameter row; rows affected."""
        try:
            return self.dml.execute(sql, params)
        except MinioDBError as exc:
            self.metrics.errors.labels(code=exc.code).inc()
            raise

    def query_schema(self, sql: Any, params: Any = None) -> pa.Schema:
        """Result schema of a query without reading data (cached: query/runner.py)."""
        return self.runner.schema(sql, params)

    def sql_tables(self) -> list[tuple[str, str, str, pa.Schema]]:
        """(db_schema, name, table type, Arrow schema) of every table SQL can read (GetTables)."""
        return [("main", t.name, "TABLE", t.schema) for t in self.catalog.list()]

    def flush(self, table: str | None = None) -> list[FlushResult]:
        if table is not None:
            self.catalog.get(table)
            return [self.flusher.flush_table(table)]
        return self.flusher.flush_all()

    def action(self, name: str, body: dict) -> Any:
        """A custom Flight action (actions.py): flush, status, create_table, backups ..."""
        return self.actions(name, body)

    def status(self) -> dict:
        return self.actions.status()

    def cluster_fragment(self, ticket: bytes) -> pa.Table:
        """A peer's fragment of a distributed query (a signed ticket: coordinator/service.py)."""
        return self.cluster.fragment(ticket)

    def query_endpoints(self, sql: Any, requested: Callable[[], bool | None] | None = None
                        ) -> tuple[pa.Schema, list] | None:
        """Multi-endpoint FlightInfo of a plain scan (coordinator/endpoints.py): (schema,
        [(location, ticket)]), or None for the single endpoint. ``requested()``: the session's
        ``miniodb.multi_endpoint`` (None when unset: ``coordinator.multi_endpoint`` decides)."""
        if not self.cluster.distributed:
            return None
        asked = requested() if requested is not None else None
        want = self.settings.coordinator.multi_endpoint if asked is None else asked
        if not want:
            return None
        st = as_statement(sql)
        if st.kind != "SELECT" or st.param_count:
            return None
        schema = self.runner.schema(st)
        eps = self.cluster.endpoints(st, schema)
        return None if eps is None else (schema, eps)

    def cluster_action(self, kind: str, body: bytes) -> dict:
        """An internal call of a coordinator: pin, release, cancel (signed)."""
        return self.cluster.action(kind, body)

    # -- stop ----------------------------------------------------------------------------
    def drain(self) -> None:
        """Leave the load balancer's pool: readiness answers 503 while everything still serves."""
        if not self.draining.is_set():
            self.draining.set()
            log.info("node %s draining: not ready; still serving in-flight and new calls", self.node_id)

    def stop(self, drain_timeout: float | None = None) -> None:
        """Ordered shutdown: REST, then Flight (each lets its in-flight calls finish, at most
        ``drain_timeout`` seconds, default ``server.drain_timeout``), flush every buffer, stores."""
        with self._stop_lock:
            if self._stopped.is_set():
                return
            self._stopped.set()
        self.draining.set()
        self.metrics.up.set(0)
        timeout = self.settings.server.drain_timeout if drain_timeout is None else drain_timeout
        if self.rest is not None:  # first: its in-flight requests still call Flight
            self.rest.stop(max(timeout, 0.1))
        if self.flight is not None:
            self._shutdown_flight(timeout)
        if self.metrics_http is not None:
            self.metrics_http.stop()
        self.retention.stop()
        self.compactor.stop()
        self.vacuum.stop()
        self.trimmer.stop()
        if self.adopter is not None:
            self.adopter.stop()
        self.flusher.stop()
        try:
            self.flusher.flush_all()
        except Exception as exc:  # noqa: BLE001 - the WAL keeps the rows
            log.warning("final flush incomplete, rows stay in the WAL: %s", exc)
        if self.wal_mirror is not None:
            self.wal_mirror.stop()
        try:
            self.metadata.unregister_node(self.node_id)
        except MinioDBError:
            pass
        if getattr(self, "cluster", None) is not None:
            self.cluster.close()
        self.resolver.close()
        if self.result_cache is not None:
            self.result_cache.close()
        self.engine.close()
        self.metadata.close()
        self.store.close()
        self.lock.release()

    def _shutdown_flight(self, timeout: float) -> None:
        """gRPC shutdown waits for every in-flight call; past ``timeout`` the running queries are
        interrupted, and if calls still hang the flush goes ahead anyway (acknowledged rows are
        in the WAL either way) and ``flight_stuck`` tells the caller."""
        t = threading.Thread(target=self.flight.shutdown, name="miniodb-flight-shutdown", daemon=True)
        t.start()
        t.join(timeout)
        if t.is_alive():
            log.warning("Flight calls still running after server.drain_timeout=%ss; cancelling queries", timeout)
            self.flight.cancel_all()
            t.join(5.0)
        if t.is_alive():
            self.flight_stuck = True
            log.warning("Flight calls still running after cancelling; flushing anyway")

    def wait(self) -> None:
        self._stopped.wait()

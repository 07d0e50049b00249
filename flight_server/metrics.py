"""Prometheus metrics of one node, on its own registry (no globals; tests run many nodes).

Counters are declared without the ``_total`` suffix; the exposition adds it
(``miniodb_query_cache_hit`` is scraped as ``miniodb_query_cache_hit_total``).

Labels stay bounded: statement kind, error code, table name (tables are few and named by
operators), HTTP method, route template and status. Never SQL text, ids, keys or tokens.

:class:`HttpMetrics` is an ASGI wrapper that counts the REST gateway's requests and their
durations by route template (``/api/v1/tables/{name}``, never the concrete path).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

QUERY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
FLUSH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class _Callbacks(Collector):
    """Values read at scrape time from the objects that own them (file cache counters, ...)."""

    def __init__(self):
        self._items: list[tuple[str, str, str, Callable[[], float]]] = []

    def add(self, kind: str, name: str, doc: str, fn: Callable[[], float]) -> None:
        self._items.append((kind, name, doc, fn))

    def describe(self):
        return []  # values appear once bound; nothing to check at registration

    def collect(self):
        for kind, name, doc, fn in self._items:
            try:
                value = float(fn())
            except Exception:  # noqa: BLE001 - a broken source must not break the scrape
                continue
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(name, doc, value=value)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, version: str, node_id: str):
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.up = Gauge("miniodb_up", "1 while the node serves", registry=r)
        self.build_info = Gauge("miniodb_build_info", "Build information", ["version", "node_id"], registry=r)
        self.build_info.labels(version=version, node_id=node_id).set(1)
        # queries
        self.query_duration = Histogram("miniodb_query_duration_seconds",
                                        "Query time until the result is ready to stream (cache hits included)",
                                        ["kind"], buckets=QUERY_BUCKETS, registry=r)
        self.query_rows = Counter("miniodb_query_rows", "Rows returned by queries", registry=r)
        self.query_bytes = Counter("miniodb_query_bytes", "Arrow bytes returned by queries", registry=r)
        self.query_cache_hit = Counter("miniodb_query_cache_hit", "Query result cache hits", registry=r)
        self.query_plain_scans = Counter("miniodb_query_plain_scans", "Plain scans (every row of one table, no "
                                         "filter) streamed by Arrow's Parquet reader instead of DuckDB", registry=r)
        self.query_cache_miss = Counter("miniodb_query_cache_miss", "Query result cache misses", registry=r)
        self.query_cache_shared_hit = Counter("miniodb_query_cache_shared_hit",
                                              "Query result cache hits served from the shared (Redis) level",
                                              registry=r)
        self.query_cache_bytes = Gauge("miniodb_query_cache_bytes", "Bytes held by the local result cache",
                                       registry=r)
        self.query_cache_entries = Gauge("miniodb_query_cache_entries", "Entries of the local result cache",
                                         registry=r)
        self.object_store_read_bytes = Counter("miniodb_object_store_read_bytes",
                                               "Bytes fetched from the object store for queries", registry=r)
        # ingest, buffer, WAL, flush
        self.ingest_rows = Counter("miniodb_ingest_rows", "Rows acknowledged", ["table"], registry=r)
        self.ingest_bytes = Counter("miniodb_ingest_bytes", "Arrow bytes acknowledged", ["table"], registry=r)
        self.buffer_rows = Gauge("miniodb_buffer_rows", "Rows buffered (not yet in Parquet)", ["table"], registry=r)
        self.wal_bytes = Gauge("miniodb_wal_bytes", "Bytes in WAL segments", registry=r)
        self.buffer_spilled_bytes = Gauge("miniodb_buffer_spilled_bytes", "Buffered bytes read from memory-mapped "
                                          "WAL segments instead of held in memory", registry=r)
        self.flush_duration = Histogram("miniodb_flush_duration_seconds", "Buffer flush time",
                                        buckets=FLUSH_BUCKETS, registry=r)
        self.objects_written = Counter("miniodb_objects_written", "Parquet objects written", registry=r)
        # tables and compaction
        self.table_files = Gauge("miniodb_table_files", "Committed Parquet files per table", ["table"], registry=r)
        self.compaction_runs = Counter("miniodb_compaction_runs", "Compaction passes over a table, by outcome "
                                       "(compacted, nothing, busy, conflict, error)", ["outcome"], registry=r)
        self.compaction_bytes = Counter("miniodb_compaction_bytes", "Parquet bytes of the files compaction merged",
                                        registry=r)
        self.compaction_files = Counter("miniodb_compaction_files", "Files compaction replaced by merged ones",
                                        registry=r)
        # errors, cluster
        self.errors = Counter("miniodb_errors", "Errors returned to clients", ["code"], registry=r)
        self.live_nodes = Gauge("miniodb_live_nodes", "Live nodes seen in the registry", registry=r)
        self.query_fragments = Counter("miniodb_query_fragments", "Query fragments run, by this node's role",
                                       ["role"], registry=r)
        self.peer_request = Histogram("miniodb_peer_request_seconds", "Internal calls to peers (pin, fragment)",
                                      registry=r)
        self.peer_failures = Counter("miniodb_peer_failures", "Peers dropped from a query (error or timeout)",
                                     registry=r)
        self.replanned_files = Counter("miniodb_replanned_files", "Files moved off a failed peer onto another node",
                                       registry=r)
        # REST gateway
        self.http_requests = Counter("miniodb_http_requests", "REST gateway requests",
                                     ["method", "route", "status"], registry=r)
        self.http_duration = Histogram("miniodb_http_request_duration_seconds", "REST gateway request time",
                                       ["method", "route"], buckets=HTTP_BUCKETS, registry=r)
        # scrape-time values (file cache counters live in the FileCache)
        self._callbacks = _Callbacks()
        r.register(self._callbacks)
        self._buffer_tables: set[str] = set()
        self._file_tables: set[str] = set()

    def bind_file_cache(self, hits: Callable[[], int], misses: Callable[[], int]) -> None:
        """Export the file cache's own hit/miss counters (read at scrape time)."""
        self._callbacks.add("counter", "miniodb_file_cache_hit", "Parquet file cache hits", hits)
        self._callbacks.add("counter", "miniodb_file_cache_miss", "Parquet file cache misses", misses)

    def set_buffer_rows(self, rows_by_table: Mapping[str, int]) -> None:
        """Set the per-table buffer gauge; tables that went away lose their series."""
        for name, rows in rows_by_table.items():
            self.buffer_rows.labels(table=name).set(rows)
        for gone in self._buffer_tables - set(rows_by_table):
            try:
                self.buffer_rows.remove(gone)
            except KeyError:
                pass
        self._buffer_tables = set(rows_by_table)

    def set_table_files(self, files_by_table: Mapping[str, int]) -> None:
        """Set the per-table file-count gauge; dropped tables lose their series."""
        for name, n in files_by_table.items():
            self.table_files.labels(table=name).set(n)
        for gone in self._file_tables - set(files_by_table):
            try:
                self.table_files.remove(gone)
            except KeyError:
                pass
        self._file_tables = set(files_by_table)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class HttpMetrics:
    """ASGI wrapper: request count (method, route template, status) and duration per route."""

    def __init__(self, app, metrics: Metrics, routes: Iterable[str] = ()):
        self.app = app
        self.metrics = metrics
        self._templates = [(re.compile("^" + re.sub(r"\{[^}/]+\}", "[^/]+", p) + "$"), p) for p in routes]

    def route_of(self, path: str) -> str:
        for rx, template in self._templates:
            if rx.match(path):
                return template
        return "other"

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message):
            if message.get("type") == "http.response.start":
                status["code"] = int(message.get("status", 500))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            method = scope.get("method", "GET").upper()
            if method not in ("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"):
                method = "other"
            route = self.route_of(scope.get("path", ""))
            self.metrics.http_requests.labels(method=method, route=route, status=str(status["code"])).inc()
            self.metrics.http_duration.labels(method=method, route=route).observe(time.perf_counter() - started)

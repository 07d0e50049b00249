"""Prometheus metrics of one node, on its own registry (no globals; tests run many nodes)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

QUERY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, version: str, node_id: str):
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.up = Gauge("miniodb_up", "1 while the node serves", registry=r)
        self.build_info = Gauge("miniodb_build_info", "Build information", ["version", "node_id"], registry=r)
        self.build_info.labels(version=version, node_id=node_id).set(1)
        self.query_duration = Histogram("miniodb_query_duration_seconds", "Query time until the first batch",
                                        ["kind"], buckets=QUERY_BUCKETS, registry=r)
        self.query_cache_hit = Counter("miniodb_query_cache_hit", "Query result cache hits", registry=r)
        self.query_cache_miss = Counter("miniodb_query_cache_miss", "Query result cache misses", registry=r)
        self.file_cache_hit = Counter("miniodb_file_cache_hit", "Parquet file cache hits", registry=r)
        self.file_cache_miss = Counter("miniodb_file_cache_miss", "Parquet file cache misses", registry=r)
        self.ingest_rows = Counter("miniodb_ingest_rows", "Rows acknowledged", ["table"], registry=r)
        self.ingest_bytes = Counter("miniodb_ingest_bytes", "Arrow bytes acknowledged", ["table"], registry=r)
        self.buffer_rows = Gauge("miniodb_buffer_rows", "Rows buffered (not yet in Parquet)", ["table"], registry=r)
        self.wal_bytes = Gauge("miniodb_wal_bytes", "Bytes in WAL segments", registry=r)
        self.flush_duration = Histogram("miniodb_flush_duration_seconds", "Buffer flush time", registry=r)
        self.objects_written = Counter("miniodb_objects_written", "Parquet objects written", registry=r)
        self.errors = Counter("miniodb_errors", "Errors returned to clients", ["code"], registry=r)
        self.live_nodes = Gauge("miniodb_live_nodes", "Live nodes seen in the registry", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)

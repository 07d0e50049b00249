"""Workloads: each measures MinIODB on one main path and, side by side in the same run, the
baseline that bounds it. ``all`` runs ingest, export, query, latency, rest, memory (scaled to
``min(50M, 25 x --rows)`` rows), mirror, tpch (at ``--scale``; about 2 minutes end to end
at SF1 on 2 cores) and selective (point lookup and time range, under a minute)."""

from __future__ import annotations

from collections.abc import Callable

from . import cluster, export, ingest, latency, memory, mirror, query, rest, security, selective, tpch

WORKLOADS: dict[str, Callable] = {
    "ingest": ingest.run,
    "export": export.run,
    "query": query.run,
    "latency": latency.run,
    "rest": rest.run,
    "memory": memory.run,
    "security": security.run,  # auth/TLS off vs on (four nodes of its own); not in "all"
    "cache": security.run_cache,  # result cache hits, in the node and through ADBC; not in "all"
    "mirror": mirror.run,  # wal.mirror off vs on (two nodes of its own)
    "tpch": tpch.run,
    "selective": selective.run,  # point lookup + one-day time range vs DuckDB (issue 19)
    "cluster": cluster.run,  # 3 server-mode nodes (own redis-server + moto_server) vs one; not in "all"  # the 22 TPC-H queries at --scale vs DuckDB (the headline ratios)
}
ALL = ("ingest", "export", "query", "latency", "rest", "memory", "mirror", "tpch", "selective")

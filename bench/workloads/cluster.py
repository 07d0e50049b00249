"""A three-node cluster vs one node, on the same TPC-H data (``--scale``; 0.1 by default for
this workload, as the three nodes and their Redis + S3 share the machine).

The workload starts its own ``redis-server`` and ``moto_server`` (in-memory S3) and three
server-mode nodes sharing them (``coordinator`` on, query cache off). The baseline is the
bench's own single embedded node (local folder + SQLite), loaded by the tpch workload's
``load``. Into the cluster every table goes through ADBC ``adbc_ingest``, its batches dealt
round-robin over the three nodes, then every node flushes: each node commits its own files,
so a query fans out to all three. Queries go through ADBC to node ``n0`` (the coordinator).

Named results: ``cluster3_tpch_geomean_vs_single_node`` (geometric mean over the 22 queries
of cluster median / single-node median; target <= 1.5), ``cluster_small_query_p50_ms``
(``SELECT count(*)`` of ``nation``; target: at most twice ``single_node_small_query_p50_ms``,
the ratio is ``cluster_small_query_p50_vs_single_node``), ``cluster_scan_rows_per_s``
(``SELECT *`` of ``lineitem``, beside ``single_node_scan_rows_per_s``). Every answer of the
cluster must equal the single node's (multiset unless ORDER BY; floats to 1e-6 relative).

On one machine the cluster cannot be faster: four processes share the same cores. The ratios
measure the cost of distribution (fan-out, pins, gathering), not the scaling across machines.
"""

from __future__ import annotations

import math
import time
import uuid

import pyarrow.parquet as pq

from clients.flight import Client

from ..metrics import HIGHER, LOWER, Measurement, define
from ..runner import Bench, adbc_source
from ..services import PortService, Service, moto_service, node_service, redis_service
from ..tpch_queries import QUERIES
from .latency import timed_calls
from .tpch import (
    PREFIX,
    TABLES,
    _batches,
    _plain_schema,
    compare,
    generate,
    load,
    node_sql,
    ordered,
    scale_tag,
)

define("cluster3_tpch_geomean_vs_single_node", "x", LOWER,
       "TPC-H (--scale, 0.1 by default) over ADBC: geometric mean over the 22 queries of the time on a "
       "3-node cluster (Redis + S3, one machine) / the time on one embedded node", 1.5, "cluster #13")
define("cluster3_tpch_worst_vs_single_node", "x", LOWER, "the worst of the 22 cluster / single-node ratios")
define("cluster_small_query_p50_ms", "ms", LOWER,
       "p50 of SELECT count(*) FROM nation over ADBC on the 3-node cluster (target: <= 2x the single node's)",
       None, "cluster #13")
define("single_node_small_query_p50_ms", "ms", LOWER, "the same query's p50 on the single embedded node")
define("cluster_small_query_p50_vs_single_node", "x", LOWER,
       "cluster_small_query_p50_ms / single_node_small_query_p50_ms", 2.0, "cluster #13")
define("cluster_scan_rows_per_s", "rows/s", HIGHER, "SELECT * of lineitem over ADBC on the 3-node cluster",
       None, "cluster #13")
define("single_node_scan_rows_per_s", "rows/s", HIGHER, "SELECT * of lineitem over ADBC on the single node")

NODES = 3
SMALL_WARMUP = 20
SMALL_QUERIES = 100


def _cluster_env(redis: PortService, moto: PortService, prefix: str, node_id: str) -> dict[str, str]:
    return {
        "MINIODB_REDIS_HOST": "127.0.0.1", "MINIODB_REDIS_PORT": str(redis.port), "MINIODB_REDIS_PREFIX": prefix,
        "MINIODB_STORAGE_MINIO_ENDPOINT": f"127.0.0.1:{moto.port}",
        "MINIODB_STORAGE_MINIO_ACCESS_KEY": "bench", "MINIODB_STORAGE_MINIO_SECRET_KEY": "bench-secret",
        "MINIODB_STORAGE_MINIO_BUCKET": "miniodb-bench", "MINIODB_STORAGE_MINIO_USE_SSL": "false",
        "MINIODB_SERVER_NODE_ID": node_id, "MINIODB_QUERY_CACHE_ENABLED": "false",
    }


def _wait_nodes(c: Client, n: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        got = c.query("SELECT count(*) AS n FROM system.nodes").to_pylist()[0]["n"]
        if got == n:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{got} of {n} cluster nodes live after {timeout:.0f}s")
        time.sleep(0.2)


def _load_cluster(b: Bench, conns: list, clients: list[Client], src) -> None:
    """Every table, its batches dealt round-robin over the nodes' ADBC ingest; then every node flushes."""
    rows = sum(pq.ParquetFile(src / f"{t}.parquet").metadata.num_rows for t in TABLES)
    started = time.perf_counter()
    with b.task("load TPC-H into the cluster", rows, "rows") as task:
        for t in TABLES:
            path = src / f"{t}.parquet"
            schema = _plain_schema(pq.ParquetFile(path).schema_arrow)
            shares: list[list] = [[] for _ in conns]
            for i, batch in enumerate(_batches(path, schema, task)):
                shares[i % len(conns)].append(batch)
            for i, (conn, share) in enumerate(zip(conns, shares, strict=True)):
                if share or i == 0:  # node 0 creates the table, the others append
                    with conn.cursor() as cur:
                        cur.adbc_ingest(PREFIX + t, adbc_source(schema, share), mode="create" if i == 0 else "append")
    for c in clients:
        c.flush()
    m = b.results.add(Measurement("cluster_load", "cluster: load 8 TPC-H tables over 3 nodes", "cluster3",
                                  "MinIODB 3 nodes · ADBC adbc_ingest + flush", rows, 0,
                                  [time.perf_counter() - started], note="one run"))
    b.report(m)


def run(b: Bench) -> None:
    import adbc_driver_flightsql.dbapi as dbapi

    scale = b.opts.scale
    tag = scale_tag(scale)
    src = generate(b, scale)
    load(b, src, scale)  # the single node (the bench's own)
    root = b.workdir / "cluster"
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    others: list[PortService] = []
    nodes: list[Service] = []
    clients: list[Client] = []
    conns: list = []
    try:
        for make in (redis_service, moto_service):
            svc = make(root)
            b.log(f"cluster: starting {svc.name} on port {svc.port}")
            others.append(svc.start())
        redis, moto = others
        for i in range(NODES):
            svc = node_service(root / f"n{i}" / "data", env=_cluster_env(redis, moto, prefix, f"n{i}"))
            svc.start()
            nodes.append(svc)
            clients.append(Client(svc.ready["flight"]))
            conns.append(dbapi.connect(svc.ready["flight"], autocommit=True))
        b.log(f"cluster: {NODES} nodes up ({', '.join(s.ready['flight'] for s in nodes)})")
        _wait_nodes(clients[0], NODES)
        _load_cluster(b, conns, clients, src)
        _tpch(b, conns[0], tag, scale)
        _small(b, conns[0])
        _scan(b, conns[0])
    finally:
        for conn in conns:
            conn.close()
        for c in clients:
            c.close()
        for svc in nodes:
            svc.stop(timeout=60)
        for svc in reversed(others):
            svc.stop()


def _query(conn, sql: str):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


def _timed(conn, sql: str, m: Measurement):
    def go():
        started = time.perf_counter()
        out = _query(conn, sql)
        m.seconds.append(time.perf_counter() - started)
        return out
    return go


def _tpch(b: Bench, cluster, tag: str, scale: float) -> None:
    ratios: dict[str, float] = {}
    wrong: list[str] = []
    with b.task(f"TPC-H {tag} cluster vs one node", len(QUERIES) * 2 * b.opts.repeat) as task:
        for n in sorted(QUERIES):
            sql = node_sql(QUERIES[n])
            title = f"TPC-H {tag.upper()} Q{n}, 3 nodes vs 1"
            ours = b.results.add(Measurement(f"cluster_tpch_{tag}_q{n}", title, "cluster3", "MinIODB 3 nodes · ADBC"))
            base = b.results.add(Measurement(f"cluster_tpch_{tag}_q{n}", title, "miniodb", "MinIODB 1 node · ADBC"))
            run_c, run_s = _timed(cluster, sql, ours), _timed(b.adbc(), sql, base)
            got, want = run_c(), run_s()  # warm-up, answers compared
            ours.seconds.clear()
            base.seconds.clear()
            problem = compare(got, want, ordered(sql))
            if problem:
                wrong.append(f"Q{n}: {problem}")
            for i in range(b.opts.repeat):
                for fn in b.order(i + n, run_c, run_s):
                    fn()
                    task.advance()
            ratio = ours.median_seconds / base.median_seconds
            ratios[f"Q{n}"] = ratio
            ours.note = base.note = f"3 nodes / 1 node = {ratio:.2f}x" + ("; WRONG ANSWER" if problem else "")
            b.log(f"{title}: cluster {ours.median_seconds * 1000:,.1f} ms, single {base.median_seconds * 1000:,.1f} ms,"
                  f" ratio {ratio:.2f}x" + (f" [red]wrong: {problem}" if problem else ""))
    for w in wrong:
        b.note(f"cluster TPC-H {tag}: answer differs from the single node's: {w}")
    geo = math.exp(sum(math.log(r) for r in ratios.values()) / len(ratios))
    worst = max(ratios, key=ratios.get)
    b.results.set("cluster3_tpch_geomean_vs_single_node", geo, scale=scale, wrong_answers=len(wrong),
                  per_query={k: round(v, 3) for k, v in ratios.items()})
    b.results.set("cluster3_tpch_worst_vs_single_node", ratios[worst], scale=scale, query=worst)
    if wrong:
        raise RuntimeError(f"{len(wrong)} cluster answers differ from the single node's: {'; '.join(wrong)[:500]}")


def _small(b: Bench, cluster) -> None:
    sql = f"SELECT count(*) AS n FROM {PREFIX}nation"
    title = "small query latency (SELECT count(*) FROM nation)"
    if _query(cluster, sql).to_pylist() != _query(b.adbc(), sql).to_pylist():
        raise RuntimeError("cluster: SELECT count(*) FROM nation differs from the single node's")
    systems = {"cluster3": (cluster, "MinIODB 3 nodes · ADBC"), "miniodb": (b.adbc(), "MinIODB 1 node · ADBC")}
    ms = {k: b.results.add(Measurement("cluster_small", title, k, label, 0, 0)) for k, (_c, label) in systems.items()}
    n = min(SMALL_QUERIES, b.opts.latency_queries)
    for conn, _label in systems.values():
        timed_calls(conn, sql, SMALL_WARMUP)
    for i in range(b.opts.repeat):
        for key in b.order(i, "cluster3", "miniodb"):
            samples = timed_calls(systems[key][0], sql, n)
            ms[key].latencies.append(samples)
            ms[key].seconds.append(sum(samples))
    for m in ms.values():
        b.report(m)
    ours, single = ms["cluster3"].latency(50) * 1000, ms["miniodb"].latency(50) * 1000
    b.results.set("cluster_small_query_p50_ms", ours, single_node_p50_ms=round(single, 3))
    b.results.set("single_node_small_query_p50_ms", single)
    b.results.ratio("cluster_small_query_p50_vs_single_node", ours, single)


def _scan(b: Bench, cluster) -> None:
    sql = f"SELECT * FROM {PREFIX}lineitem"
    title = "SELECT * FROM lineitem (ADBC)"
    got, want = _query(cluster, sql), _query(b.adbc(), sql)
    if got.num_rows != want.num_rows or got.schema.types != want.schema.types:
        raise RuntimeError(f"cluster scan: {got.num_rows} rows ({got.schema.types}), single node {want.num_rows} "
                           f"({want.schema.types})")
    rows, nbytes = want.num_rows, want.nbytes
    del got, want
    ms = {"cluster3": b.results.add(Measurement("cluster_scan", title, "cluster3", "MinIODB 3 nodes · ADBC",
                                                rows, nbytes)),
          "miniodb": b.results.add(Measurement("cluster_scan", title, "miniodb", "MinIODB 1 node · ADBC",
                                               rows, nbytes))}
    conns = {"cluster3": cluster, "miniodb": b.adbc()}
    for i in range(b.opts.repeat):
        for key in b.order(i, "cluster3", "miniodb"):
            started = time.perf_counter()
            out = _query(conns[key], sql)
            ms[key].seconds.append(time.perf_counter() - started)
            del out
    for m in ms.values():
        b.report(m)
    b.results.set("cluster_scan_rows_per_s", ms["cluster3"].rows_per_s, single_node=ms["miniodb"].rows_per_s)
    b.results.set("single_node_scan_rows_per_s", ms["miniodb"].rows_per_s)

"""The cost of ``wal.mirror: object_store``: two nodes of the same build, started by this
workload, both embedded with local-folder storage (the same store type), one with the WAL
mirror on. The same pyarrow.flight ingest (``CommandStatementIngest``, durable ack) runs
against both, interleaved (the order alternates each repeat):

* bulk: ``--rows`` narrow rows in one stream per run (``ingest_mirrored_vs_local_wal``);
* small: 8 concurrent clients, each sending 1000-row ingests, where the mirror's group
  commit is what keeps the cost down (``ingest_small_mirrored_vs_local_wal``, diagnostic).

Each run drops and re-creates the table and flushes it afterwards, untimed, so the two nodes
start every run alike. The mirrored node writes each segment a second time (a copy into the
store, fsynced) before it acknowledges; an S3 store adds a PUT round trip instead.
"""

from __future__ import annotations

import threading
import time

from clients.flight import Client

from .. import data
from ..metrics import HIGHER, Measurement, define
from ..runner import Bench
from ..services import Service, node_service

define("ingest_mirrored_vs_local_wal", "x", HIGHER,
       "pyarrow.flight ingest rows/s with wal.mirror=object_store / local WAL only (same local-folder store)",
       None, "issue 12 #4")
define("ingest_small_mirrored_vs_local_wal", "x", HIGHER,
       "8 clients x 1000-row ingests, rows/s: wal.mirror=object_store / local WAL only (diagnostic)")

TITLE = "ingest with the WAL mirror (local-folder store)"
TABLE = "bench_mirror"
CLIENTS = 8
SMALL_BATCH = 1000
SMALL_PER_CLIENT = 25


def _small_round(uri: str, batch) -> float:
    """CLIENTS threads, each SMALL_PER_CLIENT ingests of one small batch; wall seconds."""
    errors: list[BaseException] = []
    clients = [Client(uri) for _ in range(CLIENTS)]
    barrier = threading.Barrier(CLIENTS + 1)

    def one(c: Client) -> None:
        barrier.wait()
        try:
            for _ in range(SMALL_PER_CLIENT):
                c.ingest(TABLE, batch)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    for c in clients:
        c.close()
    if errors:
        raise errors[0]
    return seconds


def run(b: Bench) -> None:
    rows, repeat = b.opts.rows, b.opts.repeat
    table = data.narrow_table(rows, seed=b.opts.seed)
    small = data.narrow_table(SMALL_BATCH, seed=b.opts.seed + 1)
    nbytes = table.nbytes
    small_rows = CLIENTS * SMALL_PER_CLIENT * SMALL_BATCH
    small_bytes = CLIENTS * SMALL_PER_CLIENT * small.nbytes
    root = b.workdir / "mirror"
    services: dict[str, Service] = {}
    nodes: dict[str, Client] = {}
    bulk = {
        "local": b.results.add(Measurement("mirror_ingest", TITLE, "miniodb", "MinIODB · local WAL only",
                                           rows, nbytes, ratios=["ingest_mirrored_vs_local_wal"])),
        "mirror": b.results.add(Measurement("mirror_ingest", TITLE, "mirrored",
                                            "MinIODB · wal.mirror=object_store", rows, nbytes)),
    }
    tiny = {
        "local": b.results.add(Measurement("mirror_small", f"{TITLE}, {CLIENTS} clients x 1000-row batches",
                                           "miniodb", "MinIODB · local WAL only", small_rows, small_bytes,
                                           ratios=["ingest_small_mirrored_vs_local_wal"])),
        "mirror": b.results.add(Measurement("mirror_small", f"{TITLE}, {CLIENTS} clients x 1000-row batches",
                                            "mirrored", "MinIODB · wal.mirror=object_store",
                                            small_rows, small_bytes)),
    }
    try:
        for key, mirror in (("local", "off"), ("mirror", "object_store")):
            svc = node_service(root / key / "data", env={"MINIODB_QUERY_CACHE_ENABLED": "false",
                                                         "MINIODB_WAL_MIRROR": mirror})
            b.log(f"mirror: starting node '{key}' (wal.mirror={mirror})")
            svc.start()
            services[key] = svc
            nodes[key] = Client(svc.ready["flight"])

        def bulk_run(key: str) -> float:
            c = nodes[key]
            c.drop_table(TABLE, if_exists=True)
            started = time.perf_counter()
            acked = c.ingest(TABLE, table, mode="create")
            seconds = time.perf_counter() - started
            if acked != rows:
                b.note(f"mirror: node '{key}' acknowledged {acked} rows of {rows}")
            c.flush(TABLE)
            return seconds

        def small_run(key: str) -> float:
            c = nodes[key]
            c.drop_table(TABLE, if_exists=True)
            c.ingest(TABLE, small, mode="create")
            seconds = _small_round(services[key].ready["flight"], small)
            c.flush(TABLE)
            return seconds

        for key in nodes:  # one untimed round each: connections, page cache, recycled WAL files
            bulk_run(key)
            small_run(key)
        with b.task("WAL mirror off vs on", 4 * repeat) as t:
            for i in range(repeat):
                for key in b.order(i, "local", "mirror"):
                    bulk[key].seconds.append(bulk_run(key))
                    t.advance()
                for key in b.order(i, "mirror", "local"):
                    tiny[key].seconds.append(small_run(key))
                    t.advance()
    finally:
        for c in nodes.values():
            c.close()
        for svc in services.values():
            svc.stop(timeout=60)
    for m in (*bulk.values(), *tiny.values()):
        b.report(m)
    b.results.ratio("ingest_mirrored_vs_local_wal", bulk["mirror"].rows_per_s, bulk["local"].rows_per_s)
    b.results.ratio("ingest_small_mirrored_vs_local_wal", tiny["mirror"].rows_per_s, tiny["local"].rows_per_s)

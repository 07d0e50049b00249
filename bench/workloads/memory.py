"""Memory: peak RSS of the node while it ingests many rows in 1M-row batches with default
settings (issue #2: 50M rows stay under 2 GiB).

A 1M-row batch of 4 columns is 32 MB, over ADBC's 16 MiB message cap, so the rows go through
``pyarrow.flight`` DoPut (``CommandStatementIngest`` via :meth:`clients.flight.Client.ingest`,
which splits each batch under 8 MiB) as one stream. The node's RSS is sampled with psutil
every 50 ms. Runs once (not repeated); needs the bench's own node (its process id)."""

from __future__ import annotations

import time

import pyarrow as pa

from .. import data
from ..metrics import Measurement
from ..runner import MEMORY, Bench
from ..services import RssSampler

BATCH = 1_000_000
MIB = 1024 * 1024


def run(b: Bench) -> None:
    if b.node_pid is None:
        reason = "needs the bench's own node (run without --uri): RSS is sampled from its process"
        b.results.unavailable("memory_peak_rss_mib", reason)
        b.note(f"memory workload skipped: {reason}")
        return
    rows = b.opts.memory_rows
    b.reset_table(MEMORY)
    title = f"memory: ingest {rows:,} rows in 1M-row batches"
    m = b.results.add(Measurement("memory", title, "miniodb",
                                  "MinIODB · pyarrow.flight DoPut (Client.ingest)", rows, rows * 32,
                                  ratios=["memory_peak_rss_mib", "memory_ingest_rows_per_s"], note="one run"))
    with b.task("memory (ingest, RSS sampled)", rows, "rows") as task:
        def batches():
            for start in range(0, rows, BATCH):
                yield data.narrow_batch(start, min(BATCH, rows - start), seed=b.opts.seed + 2)

        reader = pa.RecordBatchReader.from_batches(data.NARROW_SCHEMA, batches())
        with RssSampler(b.node_pid) as rss:
            started = time.perf_counter()
            acked = b.client.ingest(MEMORY, reader, mode="create", progress=task.advance)
            m.seconds.append(time.perf_counter() - started)
    if acked != rows:
        b.note(f"memory: the node acknowledged {acked} rows of {rows}")
    b.report(m)
    b.log(f"node RSS: {rss.first / MIB:,.0f} MiB before, peak {rss.peak / MIB:,.0f} MiB")
    b.results.set("memory_peak_rss_mib", rss.peak / MIB, rows=rows, batch_rows=BATCH,
                  rss_before_mib=rss.first / MIB, samples=rss.samples,
                  transport="pyarrow.flight DoPut (CommandStatementIngest via clients.flight.Client.ingest)")
    b.results.set("memory_ingest_rows_per_s", m.rows_per_s)
    b.note(f"memory workload: {rows:,} rows in 1M-row batches sent with pyarrow.flight DoPut "
           "(CommandStatementIngest via clients.flight.Client.ingest, split under 8 MiB) because a 1M-row "
           "batch (32 MB) is over ADBC's 16 MiB message cap; node RSS sampled every 50 ms with psutil.")
    b.reset_table(MEMORY)  # frees the disk

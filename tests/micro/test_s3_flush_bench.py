"""Flush throughput to S3 (moto_server) against the local folder backend, same Parquet bytes.

Each round ingests the same 1,000,000 narrow rows (untimed) and runs the whole flush as
``miniodb flush`` does (``Node.flush``: Parquet with LZ4 and statistics, upload, catalog
commit, WAL truncate). ``test_flush_to`` gives the pytest-benchmark numbers per backend;
``test_s3_to_local_flush_ratio`` runs both backends interleaved in one run and reports bytes/s
of each and their ratio (the promise: S3 >= 0.5x local). moto_server is a Python process on
the same cores, so this is a floor for MinIO.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest

from bench.data import narrow_table

from .stack import ingest, start_node

ROWS = 1_000_000


@pytest.fixture(scope="module")
def data():
    return narrow_table(ROWS)


def make(backend: str, root: Path, moto=None, bucket: str = ""):
    env = {}
    if backend == "s3":
        env = {"MINIODB_STORAGE_MINIO_ENDPOINT": moto.endpoint, "MINIODB_STORAGE_MINIO_ACCESS_KEY": moto.access_key,
               "MINIODB_STORAGE_MINIO_SECRET_KEY": moto.secret_key, "MINIODB_STORAGE_MINIO_BUCKET": bucket,
               "MINIODB_STORAGE_MINIO_USE_SSL": "false"}
    return start_node(root, env)


def flush_once(node, data):
    ingest(node, "t", data)
    return node.flush("t")[0]


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_flush_to(benchmark, tmp_path, data, backend, request):
    moto = request.getfixturevalue("moto_server") if backend == "s3" else None
    bucket = request.getfixturevalue("s3_bucket") if backend == "s3" else ""
    node = make(backend, tmp_path, moto, bucket)
    try:
        result = benchmark.pedantic(flush_once, args=(node, data), rounds=5, iterations=1, warmup_rounds=1)
        benchmark.extra_info.update(backend=backend, rows=ROWS, parquet_bytes=result.bytes)
        assert result.rows == ROWS
    finally:
        node.stop()


def test_s3_to_local_flush_ratio(tmp_path, data, moto_server, s3_bucket, capsys):
    nodes = {b: make(b, tmp_path / b, moto_server, s3_bucket) for b in ("local", "s3")}
    rates: dict[str, list[float]] = {"local": [], "s3": []}
    try:
        for node in nodes.values():  # warm-up (imports, connection pool, first bucket writes)
            flush_once(node, data)
        for _ in range(5):
            for b, node in nodes.items():
                ingest(node, "t", data)
                started = time.perf_counter()
                r = node.flush("t")[0]
                rates[b].append(r.bytes / (time.perf_counter() - started))
    finally:
        for node in nodes.values():
            node.stop()
    local, s3 = statistics.median(rates["local"]), statistics.median(rates["s3"])
    with capsys.disabled():
        print(f"\nflush throughput (median of 5, {ROWS:,} rows): local {local / 1e6:.1f} MB/s, "
              f"s3 {s3 / 1e6:.1f} MB/s, ratio {s3 / local:.2f}")
    assert s3 / local >= 0.5, f"S3 flush throughput is {s3 / local:.2f}x local (promise: >= 0.5x)"

"""Flush throughput to S3 (moto_server) against the local folder backend, same Parquet bytes.

Each round buffers the same 1,000,000 narrow rows and runs the whole flush (Parquet with zstd
and statistics, upload, catalog commit, WAL truncate). ``test_flush_to`` gives the
pytest-benchmark numbers per backend; ``test_s3_to_local_flush_ratio`` runs both backends
interleaved in one run and reports bytes/s of each and their ratio (the promise: S3 >= 0.5x
local). moto_server is a Python process on the same cores, so this is a floor for MinIO.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest

from bench.data import narrow_table
from flight_server.buffer import BufferManager
from flight_server.cache import FileCache
from flight_server.catalog import Catalog
from flight_server.metadata.sqlite import SQLiteMetadataStore
from flight_server.persist import Flusher
from flight_server.storage import LocalObjectStore, S3ObjectStore
from flight_server.wal import WriteAheadLog
from tests.fixtures.s3 import moto_server, s3_bucket  # noqa: F401 - fixtures, used by name

from ._stack import Stack

ROWS = 1_000_000


def stack_on(root: Path, store) -> Stack:
    metadata = SQLiteMetadataStore(root / "metadata.sqlite3")
    catalog = Catalog(metadata)
    wal = WriteAheadLog(root / "wal")
    buffers = BufferManager(default_rows=10**9, default_interval=10**9, max_bytes=1 << 40)
    cache = FileCache(store, root / "cache", 1 << 30)
    flusher = Flusher("bench", catalog, store, wal, buffers, cache, root / "tmp")
    return Stack(root, store, metadata, catalog, wal, buffers, cache, flusher)


@pytest.fixture(scope="module")
def data():
    return narrow_table(ROWS)


def make(backend: str, root: Path, moto=None, bucket: str = ""):
    if backend == "local":
        store = LocalObjectStore(root / "objects")
    else:
        store = S3ObjectStore(moto.endpoint, moto.access_key, moto.secret_key, bucket)
    return stack_on(root, store)


def flush_once(stack: Stack, info, data):
    stack.buffer(info, data)
    return stack.flusher.flush_table("t")


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_flush_to(benchmark, tmp_path, data, backend, request):
    moto = request.getfixturevalue("moto_server") if backend == "s3" else None
    bucket = request.getfixturevalue("s3_bucket") if backend == "s3" else ""
    stack = make(backend, tmp_path, moto, bucket)
    info = stack.create("t", data.schema)
    result = benchmark.pedantic(flush_once, args=(stack, info, data), rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update(backend=backend, rows=ROWS, parquet_bytes=result.bytes)
    assert result.rows == ROWS
    stack.close()


def test_s3_to_local_flush_ratio(tmp_path, data, moto_server, s3_bucket, capsys):  # noqa: F811 - fixtures
    stacks = {b: make(b, tmp_path / b, moto_server, s3_bucket) for b in ("local", "s3")}
    infos = {b: s.create("t", data.schema) for b, s in stacks.items()}
    rates: dict[str, list[float]] = {"local": [], "s3": []}
    for b in stacks:  # warm-up (imports, connection pool, first bucket writes)
        flush_once(stacks[b], infos[b], data)
    for _ in range(5):
        for b, s in stacks.items():
            s.buffer(infos[b], data)
            started = time.perf_counter()
            r = s.flusher.flush_table("t")
            rates[b].append(r.bytes / (time.perf_counter() - started))
    local, s3 = statistics.median(rates["local"]), statistics.median(rates["s3"])
    with capsys.disabled():
        print(f"\nflush throughput (median of 5, {ROWS:,} rows): local {local / 1e6:.1f} MB/s, "
              f"s3 {s3 / 1e6:.1f} MB/s, ratio {s3 / local:.2f}")
    for s in stacks.values():
        s.close()
    assert s3 / local >= 0.5, f"S3 flush throughput is {s3 / local:.2f}x local (promise: >= 0.5x)"

"""The bench run: options, the node under test, the baselines, the datasets, progress bars.

:class:`Bench` owns every process it starts (its own node when no ``--uri`` is given, and the
baseline servers, all started lazily) and stops them at the end. Workloads
(:mod:`bench.workloads`) ask it for connections (``adbc()``, ``client``), for datasets
(``ensure_narrow()``, ``ensure_wide()``: loaded once, flushed, shared by the workloads) and
for the Parquet files of a table (for the in-process DuckDB baseline).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from clients.flight import Client

from . import data
from .metrics import Measurement, Results
from .services import Service, baseline_service, node_service

NARROW = "bench_narrow"
WIDE = "bench_wide"
SMALL = "bench_small_table"
REST = "bench_rest"
MEMORY = "bench_memory"
TPCH_TABLES = tuple(f"bench_tpch_{t}" for t in ("region", "nation", "supplier", "customer", "part",
                                                  "partsupp", "orders", "lineitem"))
SELECTIVE_TABLES = ("bench_sel_lineitem", "bench_sel_events")
BENCH_TABLES = (NARROW, WIDE, SMALL, REST, MEMORY, *TPCH_TABLES, *SELECTIVE_TABLES)


@dataclass
class Options:
    workloads: tuple[str, ...]
    uri: str | None = None
    rest_url: str | None = None
    username: str | None = None
    password: str | None = None
    rows: int = 2_000_000
    repeat: int = 3
    rest_rows: int = 200_000
    latency_queries: int = 200
    small_rows: int = 1000
    memory_rows: int = 50_000_000
    seed: int = 42
    scale: float = 1.0  # TPC-H scale factor (the tpch workload)
    keep_data: bool = False
    command: str = ""


def adbc_source(schema: pa.Schema, batches):
    """What to hand ``adbc_ingest``: batches already in memory go as a Table (its C stream is
    read by the driver in C++, batch for batch, without taking the GIL, as a user with a Table
    would); a generator goes as a RecordBatchReader (streamed, never materialised)."""
    if isinstance(batches, list | tuple):
        return pa.Table.from_batches(batches, schema=schema)
    return pa.RecordBatchReader.from_batches(schema, iter(batches))


class Bench:
    def __init__(self, opts: Options, console: Console | None = None):
        self.opts = opts
        self.console = console or Console(stderr=True, log_path=False)
        self.results = Results()
        self.workdir = Path(tempfile.mkdtemp(prefix="miniodb-bench-"))
        self.node: Service | None = None
        self.flight_uri = opts.uri or ""
        self.rest_url = ""
        self.objects_root: Path | None = None  # where the node's Parquet objects are, if local
        self.client: Client | None = None
        self._adbc = None
        self._services: dict[str, Service] = {}
        self._loaded: dict[str, int] = {}  # table -> rows loaded and flushed
        self._exported: dict[str, list[str]] = {}
        self.failures: list[str] = []
        self.progress = Progress(TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[unit]}"), TimeElapsedColumn(),
                                 console=self.console, disable=not self.console.is_terminal)

    # -- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> Bench:
        self.progress.start()
        try:
            self._connect()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _connect(self) -> None:
        self._attach_node()
        if self.opts.rest_url:
            self.rest_url = self.opts.rest_url.rstrip("/")

    def _attach_node(self) -> None:
        o = self.opts
        if o.uri:
            self.client = Client(o.uri, username=o.username, password=o.password)
            status = self.client.status()
            node = status.get("node", {})
            self.rest_url = node.get("rest_uri", "")
            storage = status.get("storage", "")
            if storage.startswith("file://"):
                root = Path(unquote(urlparse(storage).path))
                if root.is_dir():
                    self.objects_root = root
            self.results.meta["node"] = {"mode": "remote (--uri)", "uri": o.uri, "storage": storage,
                                         "version": node.get("version"), "node_id": node.get("node_id")}
            return
        data_dir = self.workdir / "node"
        self.node = node_service(data_dir, env={"MINIODB_QUERY_CACHE_ENABLED": "false"})
        self.log("starting a node (embedded storage in a temp folder)")
        ready = self.node.start()
        self.flight_uri = ready["flight"]
        self.rest_url = ready.get("rest", "")
        self.objects_root = data_dir / "objects"
        self.client = Client(self.flight_uri)
        health = self.client.health()
        self.results.meta["node"] = {"mode": "self-started, embedded (local folder storage + SQLite)",
                                     "uri": self.flight_uri, "rest": self.rest_url,
                                     "version": health.get("version"), "node_id": health.get("node_id"),
                                     "settings": "defaults; query result cache off"}

    def close(self) -> None:
        if self._adbc is not None:
            with contextlib.suppress(Exception):
                self._adbc.close()
            self._adbc = None
        if self.opts.uri and self.client is not None and not self.opts.keep_data:
            for t in BENCH_TABLES:
                with contextlib.suppress(Exception):
                    self.client.drop_table(t, if_exists=True)
        if self.client is not None:
            self.client.close()
            self.client = None
        for svc in self._services.values():
            svc.stop(timeout=10)
        self._services.clear()
        if self.node is not None:
            code = self.node.stop()
            if code not in (0, None):
                self.note(f"the node exited with code {code} on SIGTERM")
            self.node = None
        self.progress.stop()
        if self.opts.keep_data:
            self.log(f"kept the bench data in {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- output --------------------------------------------------------------------------
    def log(self, text: str) -> None:
        self.console.log(text)

    def note(self, text: str) -> None:
        self.results.note(text)

    @contextlib.contextmanager
    def task(self, description: str, total: int, unit: str = "runs") -> Iterator[Any]:
        tid = self.progress.add_task(description, total=total, unit=unit)

        class _Task:
            def advance(_self, n: int = 1) -> None:  # noqa: N805 - closure over the progress
                self.progress.advance(tid, n)

        try:
            yield _Task()
        finally:
            self.progress.update(tid, completed=total)

    def report(self, m: Measurement) -> None:
        parts = [f"{m.title}: {m.label}"]
        if m.rows_per_s:
            parts.append(f"{m.rows_per_s:,.0f} rows/s")
        if m.mb_per_s:
            parts.append(f"{m.mb_per_s:,.1f} MB/s")
        if m.median_seconds is not None and not m.latencies:
            parts.append(f"median {m.median_seconds * 1000:,.1f} ms")
        if m.latencies:
            parts.append(f"p50 {m.latency(50) * 1000:.2f} ms, p99 {m.latency(99) * 1000:.2f} ms")
        self.log(" · ".join(parts))

    # -- connections ---------------------------------------------------------------------
    def adbc(self):
        """One warm ADBC connection to the node (open a cursor per statement)."""
        if self._adbc is None:
            import adbc_driver_flightsql.dbapi as dbapi

            kwargs: dict[str, Any] = {"autocommit": True}
            if self.opts.password is not None:
                kwargs["db_kwargs"] = {"username": self.opts.username or "", "password": self.opts.password}
            self._adbc = dbapi.connect(self.flight_uri, **kwargs)
        return self._adbc

    def adbc_query(self, sql: str) -> pa.Table:
        with self.adbc().cursor() as cur:
            cur.execute(sql)
            return cur.fetch_arrow_table()

    def timed_pair(self, sql: str, ours, base, duck) -> tuple:
        """Two runners of ``sql``, each recording its time: through ADBC into ``ours``, and with
        DuckDB in-process (``duck.timed``) into ``base``; each returns its result."""
        def run_ours() -> pa.Table:
            started = time.perf_counter()
            out = self.adbc_query(sql)
            ours.seconds.append(time.perf_counter() - started)
            return out

        def run_duck() -> pa.Table:
            seconds, out = duck.timed(sql)
            base.seconds.append(seconds)
            return out

        return run_ours, run_duck

    def adbc_ingest(self, table: str, schema: pa.Schema, batches, mode: str = "create_append") -> int:
        with self.adbc().cursor() as cur:
            return cur.adbc_ingest(table, adbc_source(schema, batches), mode=mode)

    def service(self, name: str, module: str, *extra: str) -> dict:
        """Start a baseline server once; returns its ready info."""
        svc = self._services.get(name)
        if svc is None:
            svc = baseline_service(name, module, self.workdir, *extra)
            svc.start()
            self._services[name] = svc
        return svc.ready

    @property
    def node_pid(self) -> int | None:
        return self.node.pid if self.node is not None else None

    # -- datasets ------------------------------------------------------------------------
    def reset_table(self, table: str) -> None:
        self.client.drop_table(table, if_exists=True)
        self._loaded.pop(table, None)
        self._exported.pop(table, None)

    def loaded(self, table: str, rows: int) -> None:
        self._loaded[table] = rows

    def is_loaded(self, table: str) -> bool:
        return table in self._loaded

    def ensure_narrow(self) -> None:
        """The narrow table with ``--rows`` rows, flushed (loaded by the ingest workload when it ran)."""
        if self.is_loaded(NARROW):
            return
        rows = self.opts.rows
        self.reset_table(NARROW)
        with self.task("load narrow table", rows, "rows") as t:
            def batches():
                for b in data.narrow_batches(rows, seed=self.opts.seed):
                    yield b
                    t.advance(b.num_rows)

            self.adbc_ingest(NARROW, data.NARROW_SCHEMA, batches(), mode="create")
        self.client.flush(NARROW)
        self.loaded(NARROW, rows)

    def ensure_wide(self) -> None:
        """The lineitem-like table with ``--rows`` rows, flushed (loaded and measured by the ingest
        workload when it ran; otherwise loaded here once, through the pyarrow.flight client)."""
        if self.is_loaded(WIDE):
            return
        rows = self.opts.rows
        self.reset_table(WIDE)
        table = data.wide_table(rows, seed=self.opts.seed)
        with self.task("load wide table (16 cols)", rows, "rows") as t:
            started = time.perf_counter()
            self.client.ingest(WIDE, table, mode="create", progress=t.advance)
            seconds = time.perf_counter() - started
        m = self.results.add(Measurement("wide_ingest", "ingest wide table (16 cols, strings)", "miniodb",
                                         "MinIODB · pyarrow.flight DoPut CommandStatementIngest (durable ack)",
                                         rows, table.nbytes, [seconds], ratios=["wide_ingest_rows_per_s"],
                                         note="one run"))
        self.results.set("wide_ingest_rows_per_s", m.rows_per_s)
        self.report(m)
        self.client.flush(WIDE)
        self.loaded(WIDE, rows)

    def parquet_files(self, table: str) -> list[str]:
        """Local Parquet files holding ``table`` (flushed) for the DuckDB baseline.

        The node's own files when they are on this machine; otherwise the table is exported
        once with ``SELECT *`` into a local Parquet file (and the report says so)."""
        if table in self._exported:
            return self._exported[table]
        files: list[str] = []
        if self.objects_root is not None:
            pattern = os.path.join(glob.escape(str(self.objects_root)), table, "**", "*.parquet")
            files = sorted(glob.glob(pattern, recursive=True))
        if files:
            where = "<data-dir>/objects" if self.node is not None else str(self.objects_root)
            self.note(f"DuckDB baselines read the node's own Parquet files ({where}/<table>/...), "
                      "the same files the node queries.")
        else:
            path = self.workdir / "export" / f"{table}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            with self.adbc().cursor() as cur:
                cur.execute(f'SELECT * FROM "{table}"')
                reader = cur.fetch_record_batch()
                with pq.ParquetWriter(path, reader.schema, compression="zstd") as w:
                    for batch in reader:
                        w.write_batch(batch)
            files = [str(path)]
            self.note(f"The node's Parquet files are not on this machine: table {table} was exported with "
                      "SELECT * into a local Parquet file (zstd) for the DuckDB baseline.")
        self._exported[table] = files
        return files

    # -- helpers -------------------------------------------------------------------------
    def order(self, i: int, first, second) -> list:
        """Alternate which system runs first in repeat ``i`` (drift hits both alike)."""
        return [first, second] if i % 2 == 0 else [second, first]

    def failed(self, workload: str, exc: BaseException) -> None:
        msg = f"workload {workload!r} failed: {type(exc).__name__}: {exc}"
        self.failures.append(msg)
        self.note(msg)
        self.console.log(f"[red]{msg}")
        if self.node is not None and self.node.proc is not None and self.node.proc.poll() is not None:
            self.console.log(f"the node died (exit {self.node.proc.returncode}):\n{self.node.log_tail()}")

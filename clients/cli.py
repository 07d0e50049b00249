"""The ``miniodb`` command: ``serve`` (a node), client commands over Flight, and ``gateway`` /
``bench`` (loaded lazily, so client commands start fast and need no server modules)."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path

import click

from . import errors

DEFAULT_URI = "grpc://localhost:8080"


def _client(ctx: click.Context):
    from .flight import Client

    o = ctx.obj
    return Client(o["uri"], username=o.get("username"), password=o.get("password"), token=o.get("token"))


def _fail(exc: errors.MinioDBError) -> None:
    click.echo(f"error ({exc.code}): {exc.message}", err=True)
    sys.exit(2 if isinstance(exc, errors.InvalidRequest | errors.NotFound | errors.AlreadyExists) else 1)


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except errors.MinioDBError as exc:
            _fail(exc)


@click.group(cls=_Group)
@click.option("--uri", envvar="MINIODB_URI", default=DEFAULT_URI, show_default=True, help="Flight URI of a node")
@click.option("--username", envvar="MINIODB_USERNAME", default=None)
@click.option("--password", envvar="MINIODB_PASSWORD", default=None, help="API key (Basic auth)")
@click.option("--token", envvar="MINIODB_TOKEN", default=None, help="API key or token (Bearer auth)")
@click.pass_context
def main(ctx, uri, username, password, token):
    """MinIODB: a columnar analytics server speaking Arrow Flight SQL."""
    ctx.ensure_object(dict)
    ctx.obj.update(uri=uri, username=username, password=password, token=token)


@main.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None, help="YAML settings file")
@click.option("--data-dir", default=None, help="data folder (WAL, cache, embedded storage)")
@click.option("--host", default=None)
@click.option("--flight-port", type=int, default=None, help="Flight SQL port (0: any free port)")
@click.option("--rest-port", type=int, default=None)
@click.option("--metrics-port", type=int, default=None)
@click.option("--node-id", default=None)
@click.option("--ready-file", type=click.Path(dir_okay=False), default=None,
              help="write the listener URIs as JSON here once every listener is up")
@click.option("--log-level", default=None)
def serve(config_file, data_dir, host, flight_port, rest_port, metrics_port, node_id, ready_file, log_level):
    """Run a node (embedded storage unless Redis/MinIO are configured)."""
    from flight_server.config import ConfigError, load_settings

    overrides = {"server.data_dir": data_dir, "server.host": host, "server.grpc_port": flight_port,
                 "server.rest_port": rest_port, "server.metrics_port": metrics_port, "server.node_id": node_id,
                 "server.log_level": log_level}
    try:
        settings = load_settings(config_file, overrides)
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)
    logging.basicConfig(level=settings.server.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from flight_server.node import Node

    node = Node(settings)
    try:
        node.start()
    except errors.MinioDBError as exc:
        click.echo(f"cannot start: {exc.message}", err=True)
        sys.exit(1)
    stopping = threading.Event()

    def on_signal(signum, frame):
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if ready_file:
        tmp = Path(ready_file).with_suffix(".tmp")
        tmp.write_text(json.dumps(node.addresses))
        tmp.replace(ready_file)
    click.echo(f"MinIODB node {node.node_id} ready: flight {node.addresses['flight']}, "
               f"rest {node.addresses['rest']}, metrics {node.addresses['metrics']}", err=True)
    while not stopping.wait(0.5):
        pass
    click.echo("shutting down: flushing buffers", err=True)
    node.stop()
    sys.exit(0)


@main.command()
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "parquet"]), default="table")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None)
@click.pass_context
def sql(ctx, sql, fmt, output):
    """Run one SQL statement and print (or save) the result."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    with _client(ctx) as c:
        if fmt == "parquet":
            if not output:
                raise click.UsageError("--format parquet needs --output FILE")
            reader = c.query_reader(sql)
            with pq.ParquetWriter(output, reader.schema, compression="zstd") as w:
                for batch in reader:
                    w.write_batch(batch)
            return
        table = c.query(sql)
    if fmt == "csv":
        sink = output or sys.stdout.buffer
        pacsv.write_csv(table, sink)
        return
    if fmt == "json":
        text = "\n".join(json.dumps(r, default=str) for r in table.to_pylist())
    else:
        text = _render_table(table)
    if output:
        Path(output).write_text(text + "\n")
    else:
        click.echo(text)


def _render_table(table, limit: int = 1000) -> str:
    from rich.console import Console
    from rich.table import Table

    t = Table(show_lines=False)
    for f in table.schema:
        t.add_column(f"{f.name}\n{f.type}")
    for row in table.slice(0, limit).to_pylist():
        t.add_row(*["NULL" if v is None else str(v) for v in row.values()])
    console = Console(record=True, width=200)
    with console.capture() as cap:
        console.print(t)
        if table.num_rows > limit:
            console.print(f"... {table.num_rows - limit} more rows")
        console.print(f"({table.num_rows} rows)")
    return cap.get().rstrip()


def _read_input(path: str):
    """An Arrow reader over a CSV, Parquet, JSON Lines or Arrow IPC file (chosen by suffix)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.ipc as ipc
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    suffix = Path(path).suffix.lower()
    if suffix in (".parquet", ".pq"):
        pf = pq.ParquetFile(path)
        return pf.schema_arrow, pf.iter_batches(batch_size=65536), pf.metadata.num_rows
    if suffix == ".csv":
        r = pacsv.open_csv(path)
        return r.schema, iter(r), None
    if suffix in (".jsonl", ".ndjson", ".json"):
        t = pajson.read_json(path)
        return t.schema, iter(t.to_batches(65536)), t.num_rows
    if suffix in (".arrow", ".arrows", ".ipc", ".feather"):
        try:
            r = ipc.open_file(path)
            return r.schema, (r.get_batch(i) for i in range(r.num_record_batches)), None
        except pa.ArrowInvalid:
            s = ipc.open_stream(path)
            return s.schema, iter(s), None
    raise click.UsageError(f"unknown file type {suffix!r}: use .csv, .parquet, .jsonl or .arrow")


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--table", "-t", required=True)
@click.option("--mode", type=click.Choice(["create", "append", "replace", "create_append"]), default="create_append")
@click.pass_context
def ingest(ctx, file, table, mode):
    """Load a CSV, Parquet, JSON Lines or Arrow IPC file into a table."""
    import pyarrow as pa
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    schema, batches, total = _read_input(file)
    with _client(ctx) as c, Progress(TextColumn("ingest"), BarColumn(), TextColumn("{task.completed:,} rows"),
                                     TimeElapsedColumn(), transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task("ingest", total=total)
        reader = pa.RecordBatchReader.from_batches(schema, batches)
        rows = c.ingest(table, reader, mode=mode, progress=lambda n: bar.advance(task, n))
    click.echo(f"{rows} rows acknowledged into {table}")


@main.command()
@click.option("--pattern", default=None, help="glob, e.g. 'trips_*'")
@click.pass_context
def tables(ctx, pattern):
    """List tables."""
    with _client(ctx) as c:
        for t in c.tables(pattern):
            click.echo(t["name"])


@main.command()
@click.argument("table")
@click.pass_context
def describe(ctx, table):
    """Schema, config and stats of a table (JSON)."""
    with _client(ctx) as c:
        d = c.describe(table)
    d.pop("schema_ipc", None)
    click.echo(json.dumps(d, indent=2, default=str))


@main.command()
@click.option("--table", "-t", default=None)
@click.pass_context
def flush(ctx, table):
    """Flush buffered rows to Parquet now."""
    with _client(ctx) as c:
        r = c.flush(table)
    click.echo(f"flushed {r['rows']} rows into {r['files']} files")


@main.command()
@click.pass_context
def status(ctx):
    """Node status: buffers, WAL, cache and the live nodes."""
    with _client(ctx) as c:
        click.echo(json.dumps(c.status(), indent=2, default=str))


if __name__ == "__main__":
    main()

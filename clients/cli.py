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

from . import errors, textform

DEFAULT_URI = "grpc://localhost:8080"


def _client(ctx: click.Context):
    from .flight import Client

    o = ctx.obj
    roots = Path(o["tls_root_certs"]).read_bytes() if o.get("tls_root_certs") else None
    return Client(o["uri"], username=o.get("username"), password=o.get("password"), token=o.get("token"),
                  tls_root_certs=roots, disable_server_verification=bool(o.get("insecure")))


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
@click.option("--tls-root-certs", envvar="MINIODB_TLS_ROOT_CERTS", type=click.Path(dir_okay=False), default=None,
              help="PEM file of the CA(s) that signed a grpc+tls node's certificate")
@click.option("--insecure", is_flag=True, envvar="MINIODB_TLS_INSECURE",
              help="grpc+tls without verifying the node's certificate (testing only)")
@click.pass_context
def main(ctx, uri, username, password, token, tls_root_certs, insecure):
    """MinIODB: a columnar analytics server speaking Arrow Flight SQL."""
    ctx.ensure_object(dict)
    ctx.obj.update(uri=uri, username=username, password=password, token=token, tls_root_certs=tls_root_certs,
                   insecure=insecure)


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
    from flight_server import malloc
    from flight_server.node import Node

    malloc.configure()  # this process is a server: keep ingest buffers' memory warm

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
    from flight_server import ports

    local = ports.local_addresses(settings, node.addresses)  # what a client on this machine can paste
    if ready_file:
        tmp = Path(ready_file).with_suffix(".tmp")
        tmp.write_text(json.dumps(local))
        tmp.replace(ready_file)
    click.echo(ports.ready_message(node.node_id, settings, local), err=True)
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
        pacsv.write_csv(textform.csv_ready(table), sink)  # nested as JSON, binary as base64
        return
    if fmt == "json":
        text = "\n".join(json.dumps(r, default=textform.json_default) for r in table.to_pylist())
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


@main.command()
@click.pass_context
def backup(ctx):
    """Back up all metadata to the object store now (_meta/backups/backup_*.json)."""
    from . import protocol

    with _client(ctx) as c:
        r = c.action(protocol.ACTION_BACKUP_METADATA)
    click.echo(f"{r['backup_file']}: {r['tables']} tables, {r['files']} files, {r['bytes']} bytes")


@main.command()
@click.option("--days", type=float, default=None, help="only backups younger than this many days")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
def backups(ctx, days, as_json):
    """List metadata backups, newest first."""
    from . import protocol

    with _client(ctx) as c:
        items = c.action(protocol.ACTION_LIST_BACKUPS, {"days": days} if days is not None else {})["backups"]
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    for b in items:
        click.echo(f"{b['backup_file']}  {b['created_at']}  {b['size']} bytes")


@main.command()
@click.option("--from-latest", is_flag=True, help="restore the newest backup")
@click.option("--file", "backup_file", default=None, help="backup file name, e.g. backup_20240118_030000.json")
@click.option("--dry-run", is_flag=True, help="only report what would change")
@click.pass_context
def restore(ctx, from_latest, backup_file, dry_run):
    """Restore all metadata from a backup (prints the changes as JSON)."""
    from . import protocol

    if from_latest == bool(backup_file):
        raise click.UsageError("give exactly one of --from-latest or --file FILE")
    body = {"from_latest": from_latest, "dry_run": dry_run}
    if backup_file:
        body["backup_file"] = backup_file
    with _client(ctx) as c:
        r = c.action(protocol.ACTION_RESTORE_METADATA, body)
    click.echo(json.dumps(r, indent=2, default=str))


@main.command()
@click.option("--flight", "flight_uri", default=None, help="Flight URI of the node [default: --uri]")
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", type=int, default=8081, show_default=True, help="REST port (0: any free port)")
@click.option("--max-body-bytes", type=int, default=64 * 1024 * 1024, show_default=True,
              help="larger request bodies are refused with 413")
@click.option("--service-token", envvar="MINIODB_GATEWAY_SERVICE_TOKEN", default=None,
              help="API key the gateway uses for GET /api/v1/health when the node requires auth")
@click.option("--tls-root-certs", type=click.Path(exists=True, dir_okay=False), default=None,
              help="PEM roots to verify a grpc+tls node")
@click.option("--tls-cert-file", type=click.Path(exists=True, dir_okay=False), default=None, help="serve HTTPS")
@click.option("--tls-key-file", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--ready-file", type=click.Path(dir_okay=False), default=None,
              help="write {\"rest\": URL} as JSON here once listening")
@click.option("--log-level", default="info", show_default=True)
@click.pass_context
def gateway(ctx, flight_uri, host, port, max_body_bytes, service_token, tls_root_certs, tls_cert_file,
            tls_key_file, ready_file, log_level):
    """Run the REST gateway (/api/v1 JSON over HTTP) in front of a node's Flight port."""
    from gateway.app import GatewayConfig
    from gateway.server import serve as serve_gateway

    if max_body_bytes <= 0:
        raise click.UsageError("--max-body-bytes must be positive")
    if bool(tls_cert_file) != bool(tls_key_file):
        raise click.UsageError("give both --tls-cert-file and --tls-key-file")
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = GatewayConfig(flight_uri=flight_uri or ctx.obj["uri"], max_body_bytes=max_body_bytes,
                           tls_root_certs=Path(tls_root_certs).read_bytes() if tls_root_certs else None,
                           service_token=service_token)
    scheme = "https" if tls_cert_file else "http"
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host

    def ready(bound: int) -> None:
        click.echo(f"MinIODB REST gateway on {scheme}://{shown}:{bound}/api/v1 -> {config.flight_uri}", err=True)
        if ready_file:
            tmp = Path(ready_file).with_suffix(".tmp")
            tmp.write_text(json.dumps({"rest": f"{scheme}://{shown}:{bound}"}))
            tmp.replace(ready_file)

    serve_gateway(config, host, port, ssl_certfile=tls_cert_file, ssl_keyfile=tls_key_file,
                  log_level=log_level, ready=ready)


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
              add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def bench(ctx, args):
    """Benchmarks with side-by-side baselines (`miniodb bench --help`)."""
    from click.core import ParameterSource

    from bench.cli import bench as command

    defaults = {}  # `miniodb --uri X bench` measures X (and uses its credentials)
    for name in ("uri", "username", "password"):
        if ctx.parent is not None and ctx.parent.get_parameter_source(name) == ParameterSource.COMMANDLINE:
            defaults[name] = ctx.obj[name]
    command.main(list(args), prog_name="miniodb bench", default_map=defaults)


if __name__ == "__main__":
    main()

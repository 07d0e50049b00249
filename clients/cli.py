"""The ``miniodb`` command: the client commands over Flight, plus the commands other packages
add through the ``miniodb.commands`` entry point group (``serve`` from ``flight_server.cli``,
``gateway`` from ``gateway.cli``, ``bench`` from ``bench.cli``; see pyproject.toml).

Those are loaded only when they run (or for ``--help``), so client commands start fast, and
this package imports no other project package: the process is put together at the top.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import click

from . import errors

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


COMMANDS_GROUP = "miniodb.commands"


def _plugins() -> dict[str, EntryPoint]:
    """Commands other packages add to ``miniodb`` (name -> entry point, not loaded)."""
    return {ep.name: ep for ep in entry_points(group=COMMANDS_GROUP)}


class _Group(click.Group):
    def list_commands(self, ctx):
        return sorted({*super().list_commands(ctx), *_plugins()})

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is None:
            ep = _plugins().get(name)
            if ep is not None:
                command = ep.load()
        return command

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


if __name__ == "__main__":
    main()

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
INPUT_FORMATS = ("csv", "tsv", "json", "jsonl", "parquet", "arrow")  # == cli_io.FORMATS (not imported: pyarrow)
CONNECTION_ENV = """\b
Connection options go before or after the command (miniodb sql ... --uri X).
Environment variables:
  MINIODB_URI             node address (grpc://host:port, grpc+tls://host:port
                          or host:port)
  MINIODB_TOKEN           API key or token (Bearer auth)
  MINIODB_USERNAME        user name (Basic auth, with MINIODB_PASSWORD)
  MINIODB_PASSWORD        API key (Basic auth)
  MINIODB_TLS_ROOT_CERTS  PEM file of the CA(s) of a grpc+tls node
  MINIODB_TLS_INSECURE    1: grpc+tls without verifying the certificate"""


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
        except Exception as exc:
            # a library's or the OS's error (a result stream that broke, a file that cannot be
            # read ...): one line, never a traceback
            lib = type(exc).__module__.split(".")[0]
            if lib == "pyarrow":
                from .flight import translate

                _fail(translate(exc))
            if lib != "duckdb" and not isinstance(exc, OSError):
                raise
            lines = str(exc).strip().splitlines()
            click.echo(f"error: {lines[0] if lines else type(exc).__name__}", err=True)
            sys.exit(1)


_CONNECTION = (  # (flag, environment variable, help) of the options every client command takes
    ("--uri", "MINIODB_URI", "node address"),
    ("--username", "MINIODB_USERNAME", "Basic auth user"),
    ("--password", "MINIODB_PASSWORD", "Basic auth API key"),
    ("--token", "MINIODB_TOKEN", "Bearer API key or token"),
    ("--tls-root-certs", "MINIODB_TLS_ROOT_CERTS", "CA file of a grpc+tls node"),
    ("--insecure", "MINIODB_TLS_INSECURE", "skip TLS certificate checks"),
)


def _set_connection(ctx: click.Context, param: click.Parameter, value):
    if value not in (None, False):
        ctx.ensure_object(dict)[param.name] = value
    return value


def connection_options(fn):
    """The group's connection options, accepted after a client command too (there they win)."""
    for flag, env, text in reversed(_CONNECTION):
        extra = {"is_flag": True, "default": False} if flag == "--insecure" else {"default": None}
        if flag == "--tls-root-certs":
            extra["type"] = click.Path(dir_okay=False)
        fn = click.option(flag, expose_value=False, callback=_set_connection,
                          help=f"{text}, as before the command (env {env})", **extra)(fn)
    return fn


@click.group(cls=_Group, epilog=CONNECTION_ENV)
@click.option("--uri", envvar="MINIODB_URI", default=DEFAULT_URI, show_default=True,
              help="node address: grpc://host:port, grpc+tls://host:port or host:port (env MINIODB_URI)")
@click.option("--username", envvar="MINIODB_USERNAME", default=None,
              help="user name for Basic auth, with --password (env MINIODB_USERNAME)")
@click.option("--password", envvar="MINIODB_PASSWORD", default=None, help="API key, Basic auth (env MINIODB_PASSWORD)")
@click.option("--token", envvar="MINIODB_TOKEN", default=None,
              help="API key or token, Bearer auth (env MINIODB_TOKEN)")
@click.option("--tls-root-certs", envvar="MINIODB_TLS_ROOT_CERTS", type=click.Path(dir_okay=False), default=None,
              help="PEM file of the CA(s) that signed a grpc+tls node's certificate (env MINIODB_TLS_ROOT_CERTS)")
@click.option("--insecure", is_flag=True, envvar="MINIODB_TLS_INSECURE",
              help="grpc+tls without verifying the node's certificate, testing only (env MINIODB_TLS_INSECURE)")
@click.pass_context
def main(ctx, uri, username, password, token, tls_root_certs, insecure):
    """MinIODB: a columnar analytics server speaking Arrow Flight SQL.

    `miniodb serve` runs a node; the other commands are its clients.
    """
    ctx.ensure_object(dict)
    ctx.obj.update(uri=uri, username=username, password=password, token=token, tls_root_certs=tls_root_certs,
                   insecure=insecure)


@main.command()
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "parquet"]), default=None,
              help="output format; json is one object per line  [default: the -o file's extension "
                   "(.csv, .json, .parquet, .txt), else table]")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="write the result to this file instead of the terminal")
@connection_options
@click.pass_context
def sql(ctx, sql, fmt, output):
    """Run one SQL statement and print (or save) the result.

    CREATE TABLE, DROP TABLE and INSERT print what they did ("3 rows inserted")."""
    from . import cli_output as out

    fmt = out.output_format(fmt, output)
    with _client(ctx) as c:
        info = c.flight_info(sql)
        if len(info.schema) == 0:  # DDL/DML: the node ran it and reports the rows it changed
            click.echo(out.update_summary(sql, info.total_records))
            return
        reader = c.read(info)
        if fmt == "parquet":
            out.write_parquet(reader, output)
        elif fmt == "csv":
            out.write_csv(reader, output)
        elif fmt == "json":
            out.write_json(reader, output)
        else:
            text = out.render_table(reader.read_all())
            if output:
                Path(output).write_text(text + "\n")
            else:
                click.echo(text)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--table", "-t", required=True, help="the table to load into")
@click.option("--mode", type=click.Choice(["create", "append", "replace", "create_append"]), default="create_append",
              show_default=True, help="create: a new table; append: an existing one; replace: drop and create; "
                                      "create_append: either")
@click.option("--format", "fmt", type=click.Choice(INPUT_FORMATS), default=None,
              help="input format  [default: from the file's extension]")
@click.option("--delimiter", "-d", default=None,
              help="CSV field separator, e.g. ';' or tab  [default: detected (tab for .tsv)]")
@click.option("--types", "--schema", "types", default=None, metavar="COL=TYPE,...",
              help="column types, e.g. 'id=int64,fare=float64,price=decimal(10,2)'  [default: the table's "
                   "types if it exists, else inferred from the whole file]")
@connection_options
@click.pass_context
def ingest(ctx, file, table, mode, fmt, delimiter, types):
    """Load a file into a table, all or nothing.

    Formats: CSV, TSV, JSON (an array of objects, or JSON Lines), Parquet and Arrow IPC; CSV,
    TSV and JSON may be compressed (.gz, .zst). Values are converted to the existing table's
    column types when that loses nothing (CSV text to DECIMAL, ...); a value that does not fit
    fails the whole load."""
    import itertools

    import pyarrow as pa
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from . import cli_io

    fmt, compression = cli_io.detect_format(file, fmt)
    given = cli_io.parse_types(types)
    with _client(ctx) as c:
        existing = c.table_schema(table) if mode in ("append", "create_append") else None
        known = {**({f.name: f.type for f in existing} if existing is not None else {}), **given}
        inp = cli_io.open_input(file, fmt, compression, delimiter, known)
        cli_io.check_given(inp.schema, given)
        first = next(inp.batches, None)
        if first is None:
            click.echo(cli_io.empty_input(c, file, table, inp, existing, given, mode))
            return
        with Progress(TextColumn("ingest"), BarColumn(), TextColumn("{task.completed:,} rows"), TimeElapsedColumn(),
                      transient=True, disable=not sys.stderr.isatty()) as bar:
            task = bar.add_task("ingest", total=inp.rows)
            reader = pa.RecordBatchReader.from_batches(inp.schema, itertools.chain([first], inp.batches))
            rows = c.ingest(table, reader, mode=mode, progress=lambda n: bar.advance(task, n))
    click.echo(f"{rows} rows acknowledged into {table}")


@main.command()
@click.option("--pattern", default=None, help="glob, e.g. 'trips_*'")
@connection_options
@click.pass_context
def tables(ctx, pattern):
    """List tables."""
    with _client(ctx) as c:
        for t in c.tables(pattern):
            click.echo(t["name"])


@main.command()
@click.argument("table")
@connection_options
@click.pass_context
def describe(ctx, table):
    """Schema, config and stats of a table (JSON)."""
    with _client(ctx) as c:
        d = c.describe(table)
    d.pop("schema_ipc", None)
    click.echo(json.dumps(d, indent=2, default=str))


@main.command()
@click.option("--table", "-t", default=None, help="only this table  [default: every table]")
@connection_options
@click.pass_context
def flush(ctx, table):
    """Flush buffered rows to Parquet now."""
    with _client(ctx) as c:
        r = c.flush(table)
    click.echo(f"flushed {r['rows']} rows into {r['files']} files")


@main.command()
@click.option("--table", "-t", default=None, help="only this table  [default: every table]")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@connection_options
@click.pass_context
def compact(ctx, table, as_json):
    """Merge small Parquet files now (one compaction pass) and print what it did."""
    with _client(ctx) as c:
        r = c.compact(table)
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    age = r.get("min_file_age_seconds")
    for t in r["results"]:
        line = f"{t['table']}: {t['outcome']}, files {t['files_before']} -> {t['files_after']}"
        if t["merged_files"]:
            line += (f" ({t['merged_files']} merged into {t['written_files']}, "
                     f"{t['bytes_before']} -> {t['bytes_after']} bytes, {t['rows']} rows)")
        if t["young_files"]:
            line += f"; {t['young_files']} small files younger than {age:g}s left for later"
        if t["error"]:
            line += f"; {t['error']}"
        click.echo(line)


@main.command()
@click.option("--table", "-t", default=None, help="only this table  [default: every table]")
@connection_options
@click.pass_context
def vacuum(ctx, table):
    """Trim old table versions and delete objects no retained version references, now."""
    from . import protocol

    with _client(ctx) as c:
        r = c.action(protocol.ACTION_VACUUM, {"table": table} if table else {})
    click.echo(f"trimmed {r['trimmed']} versions, deleted {r['deleted']} objects "
               f"({r['pending']} waiting for snapshot.grace_seconds)")


@main.command("restore-table")
@click.argument("table")
@click.option("--version", "version", type=click.IntRange(min=1), required=True,
              help="the version to restore (see system.snapshots)")
@connection_options
@click.pass_context
def restore_table(ctx, table, version):
    """Make TABLE hold exactly what it held at a version (itself a new version)."""
    from . import protocol

    with _client(ctx) as c:
        r = c.action(protocol.ACTION_RESTORE_TABLE, {"table": table, "version": version})
    click.echo(f"table {r['table']} restored to version {r['restored_from']} as version {r['version']}: "
               f"{r['files']} files, {r['rows']} rows (+{r['added']} -{r['removed']} files)")


@main.command()
@connection_options
@click.pass_context
def status(ctx):
    """Node status: buffers, WAL, cache and the live nodes."""
    with _client(ctx) as c:
        click.echo(json.dumps(c.status(), indent=2, default=str))


@main.command()
@connection_options
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
@connection_options
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
@connection_options
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

"""Output of ``miniodb sql``: the format (``--format``, else the ``-o`` file's extension),
writers for table/csv/json/parquet, and the one-line summary of a statement that changes data."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pyarrow as pa

from . import errors, textform

OUTPUT_FORMATS = ("table", "csv", "json", "parquet")
_SUFFIXES = {".csv": "csv", ".json": "json", ".jsonl": "json", ".ndjson": "json", ".parquet": "parquet",
             ".pq": "parquet", ".txt": "table"}
TABLE_LIMIT = 1000


def output_format(fmt: str | None, output: str | None) -> str:
    """``--format`` if given, else the ``-o`` file's extension, else ``table``."""
    if fmt:
        if fmt == "parquet" and not output:
            raise errors.InvalidRequest("--format parquet needs -o FILE (Parquet is binary)")
        return fmt
    if not output:
        return "table"
    found = _SUFFIXES.get(Path(output).suffix.lower())
    if found is None:
        raise errors.InvalidRequest(
            f"cannot tell the output format from {Path(output).name!r}: name it .csv, .json, .parquet or .txt "
            f"(a text table), or give --format ({', '.join(OUTPUT_FORMATS)})")
    return found


def write_csv(reader: pa.RecordBatchReader, output: str | None) -> None:
    import pyarrow.csv as pacsv

    sink = output or sys.stdout.buffer
    with pacsv.CSVWriter(sink, textform.csv_schema(reader.schema)) as w:  # as REST CSV writes it
        for batch in reader:
            w.write_batch(textform.csv_ready(batch))


def write_parquet(reader: pa.RecordBatchReader, output: str) -> None:
    import pyarrow.parquet as pq

    with pq.ParquetWriter(output, reader.schema, compression="zstd") as w:
        for batch in reader:
            w.write_batch(batch)


def json_lines(reader: pa.RecordBatchReader) -> Iterator[bytes]:
    names = reader.schema.names
    for batch in reader:
        for row in zip(*[c.to_pylist() for c in batch.columns], strict=True):
            yield orjson.dumps(dict(zip(names, row, strict=True)), default=textform.json_default,
                              option=textform.JSON_OPTIONS)


def write_json(reader: pa.RecordBatchReader, output: str | None) -> None:
    sink = open(output, "wb") if output else sys.stdout.buffer  # noqa: SIM115 - closed below
    try:
        for line in json_lines(reader):
            sink.write(line + b"\n")
    finally:
        if output:
            sink.close()
        else:
            sink.flush()


def render_table(table: pa.Table, limit: int = TABLE_LIMIT) -> str:
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


_COMMENTS = re.compile(r"(--[^\n]*\n?|/\*.*?\*/|\s)+", re.S)


def update_summary(sql: str, count: int) -> str:
    """What a statement that changes data did, e.g. ``table created``, ``10 rows inserted``."""
    words = _COMMENTS.sub(" ", sql).strip().upper().split()
    kind = words[0] if words else ""
    text = " ".join(words[:8])
    rows = f"{count} row{'s' if count != 1 else ''}"
    if kind == "CREATE":
        if "IF NOT EXISTS" in text:
            return "table ready (created unless it existed)"
        return "table created" + (f", {rows} inserted" if count > 0 else "")
    if kind == "DROP":
        return "table dropped" + (" (if it existed)" if "IF EXISTS" in text else "")
    if kind == "INSERT":
        return f"{rows} inserted"
    return f"done, {rows} affected" if count >= 0 else "done"

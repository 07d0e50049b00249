"""Input files of ``miniodb ingest``: format detection, typed reading, lossless casts.

CSV and JSON are read by an in-memory DuckDB (its sniffer detects the delimiter and, with
``sample_size=-1``, infers each column's type from the whole file, so a float in the last rows
does not break an integer guess; it reads ``.gz``/``.zst`` and JSON arrays as well as JSON
Lines). Columns whose type is known (the target table's schema, or ``--types``) are read as
text (dates and times: parsed by DuckDB) and converted by Arrow's strict casts: ``6.24`` is not
an integer and ``6.245`` is not a ``decimal(10,2)``, so such a value fails the whole upload
instead of being rounded.
Parquet and Arrow IPC files are read by pyarrow.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from . import errors

BATCH_ROWS = 65536
FORMATS = ("csv", "tsv", "json", "jsonl", "parquet", "arrow")
_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".json": "json", ".jsonl": "jsonl",
             ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet", ".arrow": "arrow",
             ".arrows": "arrow", ".ipc": "arrow", ".feather": "arrow"}
_COMPRESSED = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd"}
SUPPORTED = (".csv, .tsv, .json (an array of objects, or JSON Lines), .jsonl/.ndjson, .parquet/.pq, "
             ".arrow/.arrows/.ipc/.feather; csv, tsv and json may be compressed (.gz, .zst)")
_TYPE_ALIASES = {
    "int": "int64", "integer": "int64", "bigint": "int64", "long": "int64", "smallint": "int16",
    "tinyint": "int8", "float": "float64", "double": "float64", "real": "float32", "str": "string",
    "text": "string", "varchar": "string", "utf8": "string", "boolean": "bool", "date": "date32",
    "timestamp": "timestamp[us]", "datetime": "timestamp[us]", "time": "time64[us]",
}
TYPE_EXAMPLES = "int64, float64, string, bool, date32, timestamp[us], decimal(10,2)"


@dataclass
class Input:
    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]
    rows: int | None  # known up front (Parquet, Arrow), else None
    self_typed: bool = False  # the file declares its column types (Parquet, Arrow)


def detect_format(path: str, fmt: str | None = None) -> tuple[str, str | None]:
    """(format, compression) of ``path``: ``fmt`` if given, else from the file's extension."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    compression = _COMPRESSED.get(suffixes[-1]) if suffixes else None
    if compression:
        suffixes.pop()
    found = fmt or (_SUFFIXES.get(suffixes[-1]) if suffixes else None)
    if found is None:
        raise errors.InvalidRequest(
            f"cannot tell the format of {Path(path).name!r} from its extension; supported are {SUPPORTED}; "
            f"or give --format ({', '.join(FORMATS)})")
    if compression and found in ("parquet", "arrow"):
        raise errors.InvalidRequest(f"a compressed {found} file is not supported: decompress {Path(path).name!r} "
                                    "first (Parquet and Arrow files compress their own columns)")
    return found, compression


def parse_type(text: str) -> pa.DataType:
    name = text.strip().lower()
    m = re.fullmatch(r"(?:decimal|decimal128|numeric)\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)", name)
    if m:
        return pa.decimal128(int(m.group(1)), int(m.group(2)))
    try:
        return pa.type_for_alias(_TYPE_ALIASES.get(name, name))
    except (ValueError, KeyError) as exc:
        raise errors.InvalidRequest(f"unknown type {text.strip()!r}; use e.g. {TYPE_EXAMPLES}") from exc


def parse_types(text: str | None) -> dict[str, pa.DataType]:
    """``"fare=float64,id=int64,price=decimal(10,2)"`` -> {column: Arrow type}."""
    if not text:
        return {}
    out = {}
    for part in re.split(r",(?=\s*[^,=()]+=)", text):
        name, sep, typ = part.partition("=")
        if not sep or not name.strip() or not typ.strip():
            raise errors.InvalidRequest(f"--types: expected column=type, got {part.strip()!r} "
                                        f"(e.g. --types 'fare=float64,id=int64')")
        out[name.strip()] = parse_type(typ)
    return out


def _connect():
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")  # timestamps with an offset arrive as UTC, not local time
    except duckdb.Error:
        pass  # no ICU: DuckDB then works in UTC anyway
    return con


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _delimiter(text: str) -> str:
    named = {"\\t": "\t", "tab": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}
    d = named.get(text.lower(), text)
    if len(d) != 1:
        raise errors.InvalidRequest(f"--delimiter must be one character (or tab, \\t), got {text!r}")
    return d


def _match(names: list[str], targets: dict[str, pa.DataType]) -> dict[str, pa.DataType]:
    """The known type of each of ``names`` (exact name first, then case-insensitively)."""
    lower = {k.lower(): v for k, v in targets.items()}
    return {n: targets[n] if n in targets else lower[n.lower()] for n in names
            if n in targets or n.lower() in lower}


def _csv_type(t: pa.DataType) -> str:
    """How DuckDB reads a CSV column of known type ``t``: dates and times parsed by DuckDB
    (offsets, ``T`` or a space); numbers and everything else as text, for Arrow's strict casts
    (DuckDB would round ``6.245`` into ``DECIMAL(10,2)``)."""
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ" if t.tz else "TIMESTAMP"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_time(t):
        return "TIME"
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    return "VARCHAR"


def _duck_error(exc: Exception) -> errors.InvalidRequest:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return errors.InvalidRequest(f"cannot read the file: {first}")


def _stream(con, rel, known: dict[str, pa.DataType]) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    import duckdb

    try:
        reader = rel.to_arrow_reader(BATCH_ROWS)
    except duckdb.Error as exc:
        raise _duck_error(exc) from exc
    schema, casts = plan_casts(reader.schema, known)

    def batches():
        _keep = con  # the connection must outlive its reader
        try:
            for batch in reader:
                yield cast_batch(batch, schema, casts)
        except duckdb.Error as exc:
            raise _duck_error(exc) from exc
        del _keep

    return schema, batches()


def _read_csv(path: str, fmt: str, compression: str | None, delimiter: str | None,
              known: dict[str, pa.DataType]) -> Input:
    import duckdb

    opts = ["header=true"]
    if compression:
        opts.append(f"compression={_lit(compression)}")
    given = [f"delim={_lit(_delimiter(delimiter))}"] if delimiter else ["delim='\t'"] if fmt == "tsv" else []
    con = _connect()
    try:
        found, columns = con.execute(f"SELECT Delimiter, Columns FROM sniff_csv({_lit(path)}, "
                                     f"{', '.join(opts + given)})").fetchall()[0]
    except duckdb.Error as exc:
        raise _duck_error(exc) from exc
    names = [c["name"] for c in columns]
    if len(names) == 1:
        hint = next((d for d in (";", "\t", "|", ",") if d in names[0] and d != found), None)
        if hint:
            shown = "\\t" if hint == "\t" else hint
            raise errors.InvalidRequest(f"{Path(path).name} was read as one column named {names[0]!r}; if its fields "
                                        f"are separated by {shown!r}, give --delimiter '{shown}'")
    opts.append(f"delim={_lit(found)}")  # the columns named below are those of this delimiter
    typed = _match(names, known)
    if typed:
        opts.append("types={" + ", ".join(f"{_lit(n)}: {_lit(_csv_type(t))}" for n, t in typed.items()) + "}")
    if len(typed) < len(names):
        opts.append("sample_size=-1")  # infer the other columns from every row, not the first ones
    try:
        rel = con.sql(f"SELECT * FROM read_csv({_lit(path)}, {', '.join(opts)})")
    except duckdb.Error as exc:
        raise _duck_error(exc) from exc
    schema, batches = _stream(con, rel, typed)
    return Input(schema, batches, None)


def _read_json(path: str, fmt: str, compression: str | None, known: dict[str, pa.DataType]) -> Input:
    import duckdb

    opts = ["sample_size=-1", f"format={_lit('newline_delimited' if fmt == 'jsonl' else 'auto')}"]
    if compression:
        opts.append(f"compression={_lit(compression)}")
    con = _connect()
    try:
        rel = con.sql(f"SELECT * FROM read_json({_lit(path)}, {', '.join(opts)})")
    except duckdb.Error as exc:
        raise _duck_error(exc) from exc
    schema, batches = _stream(con, rel, _match(rel.columns, known))
    return Input(schema, batches, None)


def _read_arrow(path: str, fmt: str, known: dict[str, pa.DataType]) -> Input:
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq

    if fmt == "parquet":
        pf = pq.ParquetFile(path)
        src_schema, src, rows = pf.schema_arrow, pf.iter_batches(batch_size=BATCH_ROWS), pf.metadata.num_rows
    else:
        try:
            r = ipc.open_file(path)
            src_schema, src, rows = r.schema, (r.get_batch(i) for i in range(r.num_record_batches)), None
        except pa.ArrowInvalid:
            s = ipc.open_stream(path)
            src_schema, src, rows = s.schema, iter(s), None
    schema, casts = plan_casts(src_schema, _match(src_schema.names, known))
    return Input(schema, (cast_batch(b, schema, casts) for b in src), rows, self_typed=True)


def open_input(path: str, fmt: str, compression: str | None = None, delimiter: str | None = None,
               known: dict[str, pa.DataType] | None = None) -> Input:
    """Batches of ``path`` whose columns named in ``known`` have (losslessly) that type."""
    known = known or {}
    try:
        if fmt in ("csv", "tsv"):
            return _read_csv(path, fmt, compression, delimiter, known)
        if delimiter:
            raise errors.InvalidRequest(f"--delimiter applies to csv and tsv files, not {fmt}")
        if fmt in ("json", "jsonl"):
            return _read_json(path, fmt, compression, known)
        return _read_arrow(path, fmt, known)
    except (pa.ArrowException, OSError) as exc:
        raise errors.InvalidRequest(f"cannot read {Path(path).name}: {exc}") from exc


def plan_casts(schema: pa.Schema, known: dict[str, pa.DataType]) -> tuple[pa.Schema, dict[str, pa.DataType]]:
    """The output schema and the casts to apply: a known type Arrow cannot cast to is left to
    the node to judge (it widens or refuses with a clear message)."""
    casts = {}
    fields = []
    for f in schema:
        typ = known.get(f.name)
        if typ is not None and not typ.equals(f.type):
            try:
                pc.cast(pa.array([], f.type), typ)
                casts[f.name] = typ
                f = f.with_type(typ)
            except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
                pass
        fields.append(f)
    return pa.schema(fields, metadata=schema.metadata), casts


def cast_batch(batch: pa.RecordBatch, schema: pa.Schema, casts: dict[str, pa.DataType]) -> pa.RecordBatch:
    if not casts:
        return batch
    columns = [cast_lossless(col, casts[name], name) if name in casts else col
               for name, col in zip(batch.schema.names, batch.columns, strict=True)]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def cast_lossless(col: pa.Array, typ: pa.DataType, name: str) -> pa.Array:
    """``col`` as ``typ``, or InvalidRequest naming the column and a value that does not fit."""
    try:
        out = pc.cast(col, typ, safe=True)
    except pa.ArrowInvalid as exc:
        raise errors.InvalidRequest(f"column {name!r} does not fit {typ}: {exc}") from exc
    if pa.types.is_floating(col.type) and not pa.types.is_floating(typ):
        # Arrow rounds floats into decimals: check that the values come back unchanged
        same = pc.equal(pc.cast(out, col.type), col)
        bad = pc.indices_nonzero(pc.invert(pc.fill_null(same, True)))
        if len(bad):
            raise errors.InvalidRequest(
                f"column {name!r} does not fit {typ}: {col[bad[0].as_py()].as_py()!r} would change")
    return out


def check_given(schema: pa.Schema, given: dict[str, pa.DataType]) -> None:
    """``--types`` may only name columns of the file."""
    missing = [n for n in given if not _match([n], {f.name: f.type for f in schema})]
    if missing:
        raise errors.InvalidRequest(f"--types names columns the file does not have: {', '.join(missing)} "
                                    f"(its columns: {', '.join(schema.names)})")


def empty_input(c, file: str, table: str, inp: Input, existing: pa.Schema | None,
                given: dict[str, pa.DataType], mode: str) -> str:
    """A file with a header and no rows: nothing to load; a new table needs every column's type."""
    if existing is not None:
        return f"{Path(file).name} has no rows: nothing loaded into {table}"
    untyped = [] if inp.self_typed else [n for n in inp.schema.names if not _match([n], given)]
    if untyped:
        raise errors.InvalidRequest(
            f"{Path(file).name} has no rows, so the types of its columns are unknown: give them with --types, "
            f"e.g. --types '{','.join(f'{n}=string' for n in untyped[:3])}'")
    if mode == "append":
        raise errors.NotFound(f"table {table!r} not found (mode 'append' does not create tables)")
    c.create_table(table, inp.schema, if_not_exists=mode != "create")
    return f"{Path(file).name} has no rows: created the empty table {table}"

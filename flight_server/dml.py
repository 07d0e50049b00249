"""DDL and DML through SQL, executed eagerly and exactly once.

Supported: ``CREATE TABLE [IF NOT EXISTS] t (columns)``, ``CREATE [OR REPLACE] TABLE t AS
SELECT ...``, ``DROP TABLE [IF EXISTS] t``, ``INSERT INTO t [(columns)] VALUES ... | SELECT ...``
and ``INSERT INTO t BY NAME SELECT ...``, ``DELETE FROM t [WHERE ...]`` and
``UPDATE t SET c = expr, ... [WHERE ...]`` (with ``?`` parameters). DELETE and UPDATE are parsed
into a :class:`~flight_server.rewrite.Plan` here and applied by the copy-on-write rewriter
(``rewrite.py``: flush first, prune, rewrite matching files, one strict commit).

The statement kind comes from DuckDB's parser (:func:`classify`); the parts of a statement
(target table, column list, source query) are split with sqlglot's DuckDB dialect, never with
string surgery. A declared column list is turned into an Arrow schema by a private, sandboxed
in-memory DuckDB (the engine's own types, defaults and errors). Every row written goes through
the durable ingest path (WAL fsync, then buffer), so an acknowledged INSERT survives a crash;
the source of an INSERT/CTAS is run by the ``query`` callable it is given (the node's query
runner) and streamed batch by batch.

Part of the write path: it is handed its collaborators (catalog, ingestor, a query callable,
an ingest callable) and imports nothing of the read path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import duckdb
import pyarrow as pa
import sqlglot
from sqlglot import exp

from clients.errors import InvalidRequest, NotFound, Unimplemented

from . import client_types
from .catalog import Catalog
from .ingest import Ingestor, IngestResult
from .metadata.base import TableConfig
from .rewrite import Plan, TableRewriter
from .schema import conform
from .statements import CATALOG, DEFAULT_SCHEMA, classify, refuse

log = logging.getLogger("miniodb.dml")

UPDATE_KINDS = frozenset({"CREATE", "DROP", "INSERT", "DELETE", "UPDATE"})  # the updates this node applies

SUPPORTED = ("supported are SELECT, CREATE TABLE [IF NOT EXISTS] (columns | AS SELECT), "
             "DROP TABLE [IF EXISTS], INSERT INTO ... VALUES | SELECT, DELETE FROM ... [WHERE] "
             "and UPDATE ... SET ... [WHERE]")

_SANDBOX = {"enable_external_access": False, "autoinstall_known_extensions": False,
            "autoload_known_extensions": False}


def param_rows(params: pa.Table | None) -> list[list[Any]]:
    """One list of Python values per parameter row (rows are few: one per execution)."""
    if params is None or params.num_columns == 0:
        return []
    columns = [c.to_pylist() for c in params.columns]
    return [list(row) for row in zip(*columns, strict=True)]


def table_properties(props: Sequence[exp.Expression]) -> dict[str, str]:
    """``WITH (sort_key = 'a,b', ...)`` of a CREATE TABLE as table properties (text values)."""
    out: dict[str, str] = {}
    for p in props:
        if type(p) is not exp.Property:  # TEMPORARY, WITH DATA, ...: handled by the caller
            continue
        key, value = p.this, p.args.get("value")
        if not isinstance(value, exp.Literal | exp.Identifier | exp.Column | exp.Var):
            raise InvalidRequest(f"table property {p.sql(dialect='duckdb')!r}: the value must be a literal")
        out[(key.name if isinstance(key, exp.Expression) else str(key)).lower()] = value.name
    return out


def _parse(sql: str) -> exp.Expression:
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except sqlglot.errors.SqlglotError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "syntax error"
        raise InvalidRequest(f"cannot parse statement: {first}") from exc
    if tree is None:
        raise InvalidRequest("empty SQL statement")
    return tree


def target_name(table: exp.Expression) -> str:
    """The MinIODB table a ``[miniodb.][main.]name`` reference names."""
    if not isinstance(table, exp.Table) or not table.name:
        raise InvalidRequest("the statement must name a table")
    catalog, db = table.catalog, table.db
    if catalog and catalog.lower() != CATALOG:
        raise NotFound(f"catalog {catalog!r} not found; MinIODB has one catalog, {CATALOG!r}")
    if db and not catalog and db.lower() == CATALOG:
        db = ""
    if db and db.lower() != DEFAULT_SCHEMA:
        raise NotFound(f"schema {db!r} not found; tables live in schema {DEFAULT_SCHEMA!r}")
    return table.name


#: Runs a SELECT with bound parameters (one row or None); returns an open result with
#: ``schema``, ``reader`` and ``close()`` (the node's query runner).
QueryFn = Callable[[str, Any], Any]
#: The durable ingest path: (table, batches, schema, mode) -> IngestResult.
IngestFn = Callable[..., IngestResult]


class UpdateExecutor:
    """Runs DDL/DML statements: tables are created and dropped through the ingestor, rows are
    written through ``ingest`` (default: the ingestor's), sources are read through ``query``."""

    def __init__(self, catalog: Catalog, ingestor: Ingestor, query: QueryFn, ingest: IngestFn | None = None,
                 rewriter: TableRewriter | None = None):
        self.catalog = catalog
        self.ingestor = ingestor
        self.query = query
        self.ingest = ingest if ingest is not None else ingestor.ingest
        self.rewriter = rewriter

    def execute(self, sql: str, params: pa.Table | None = None) -> int:
        """Apply ``sql`` once per parameter row (once without parameters); rows affected."""
        kind, stmt = classify(sql)
        if kind not in UPDATE_KINDS:
            refuse(kind)  # DELETE/UPDATE -> Unimplemented, COPY/SET/... -> InvalidRequest
            raise InvalidRequest(f"{kind} does not change data; run it as a query")
        rows = param_rows(params)
        expected = len(stmt.named_parameters)
        if expected and not rows:
            raise InvalidRequest(f"the statement has {expected} parameter(s) but none were bound")
        if rows and len(rows[0]) != expected:
            raise InvalidRequest(f"the statement has {expected} parameter(s), got {len(rows[0])} value(s) per row")
        tree = _parse(sql)
        if kind == "INSERT":
            if not isinstance(tree, exp.Insert):
                raise InvalidRequest("unsupported INSERT statement")
            return self._insert(tree, params, rows)
        if kind in ("DELETE", "UPDATE"):
            if self.rewriter is None:
                raise Unimplemented(f"{kind} is not available on this node")
            return sum(self.rewriter.apply(dml_plan(tree, row)) for row in rows or [[]])
        if len(rows) > 1:
            raise InvalidRequest(f"{kind} runs once; bind one row of parameters, not {len(rows)}")
        row = rows[0] if rows else None
        if kind == "CREATE":
            return self._create(tree, row)
        return self._drop(tree)

    # -- CREATE ------------------------------------------------------------------------
    def _create(self, tree: exp.Expression, row: list | None) -> int:
        if not isinstance(tree, exp.Create):
            raise Unimplemented(f"this CREATE statement is not supported; {SUPPORTED}")
        kind = str(tree.args.get("kind") or "").upper()
        if kind != "TABLE":
            raise Unimplemented(f"CREATE {kind or 'statement'} is not supported; {SUPPORTED}")
        props = tree.args.get("properties")
        prop_list = list(props.expressions) if props is not None else []
        if any(isinstance(p, exp.TemporaryProperty) for p in prop_list):
            raise InvalidRequest("temporary tables are not supported: every MinIODB table is durable")
        if_not_exists, replace = bool(tree.args.get("exists")), bool(tree.args.get("replace"))
        if if_not_exists and replace:
            raise InvalidRequest("CREATE OR REPLACE and IF NOT EXISTS cannot be combined")
        target = tree.this
        table = target.this if isinstance(target, exp.Schema) else target
        name = target_name(table)
        source = tree.expression
        properties = table_properties(prop_list)
        if source is None:
            if not isinstance(target, exp.Schema) or not target.expressions:
                raise InvalidRequest("CREATE TABLE needs a column list or AS SELECT")
            schema = declared_schema(target)
            if replace:
                self.ingestor.drop_table(name, if_exists=True)
            self.ingestor.create_table(name, schema, TableConfig(properties=properties), if_not_exists=if_not_exists)
            return 0
        if properties:
            raise InvalidRequest("WITH (...) table properties need a column list: CREATE TABLE t (columns) "
                                 "WITH (...), then INSERT INTO t SELECT ...")
        if isinstance(target, exp.Schema) and target.expressions:
            raise InvalidRequest("CREATE TABLE ... AS SELECT takes no column list")
        if if_not_exists and self.catalog.find(name) is not None:
            return 0
        no_data = any(isinstance(p, exp.WithDataProperty) and p.args.get("no") for p in prop_list)
        result = self.query(_source_sql(source), row)
        try:
            batches = iter(()) if no_data else _batches(result.reader)
            ingested = self.ingest(name, batches, result.schema, "replace" if replace else "create")
        finally:
            result.close()
        return ingested.rows

    # -- DROP --------------------------------------------------------------------------
    def _drop(self, tree: exp.Expression) -> int:
        if not isinstance(tree, exp.Drop):
            raise Unimplemented(f"this DROP statement is not supported; {SUPPORTED}")
        kind = str(tree.args.get("kind") or "").upper()
        if kind != "TABLE":
            raise Unimplemented(f"DROP {kind or 'statement'} is not supported; {SUPPORTED}")
        tables = tree.args.get("tables") or ([tree.this] if tree.this is not None else [])
        if not tables:
            raise InvalidRequest("DROP TABLE needs a table name")
        names = [target_name(t) for t in tables]
        for name in names:
            self.ingestor.drop_table(name, if_exists=bool(tree.args.get("exists")))
        return 0

    # -- INSERT ------------------------------------------------------------------------
    def _insert(self, tree: exp.Insert, params: pa.Table | None, rows: list[list]) -> int:
        for key, what in (("returning", "INSERT ... RETURNING"), ("alternative", "INSERT OR REPLACE/IGNORE"),
                          ("conflict", "INSERT ... ON CONFLICT"), ("overwrite", "INSERT OVERWRITE")):
            if tree.args.get(key):
                raise Unimplemented(f"{what} is not supported: MinIODB tables have no keys; {SUPPORTED}")
        if tree.args.get("default"):
            raise InvalidRequest("INSERT ... DEFAULT VALUES is not supported; list the values")
        target = tree.this
        columns: list[str] | None = None
        if isinstance(target, exp.Schema):
            columns = [c.name for c in target.expressions]
            target = target.this
        name = target_name(target)
        info = self.catalog.get(name)
        by_name = bool(tree.args.get("by_name"))
        source = tree.expression
        if source is None:
            raise InvalidRequest("INSERT needs VALUES or a SELECT")
        if isinstance(source, exp.Subquery):
            source = source.unnest()
        if params is not None and rows and _all_placeholders(source):
            # INSERT INTO t VALUES (?, ?, ...) bound with N rows: the parameters are the data.
            data = params.rename_columns([f"c{i}" for i in range(params.num_columns)])
            mapper = _Mapper(info.schema, columns, False, data.schema)
            mapped = (out for b in data.to_batches() for out in mapper(b))
            return self.ingest(info.name, mapped, info.schema, "append").rows
        sql = _source_sql(source)

        def batches() -> Iterator[pa.RecordBatch]:
            for row in rows or [None]:
                result = self.query(sql, row)
                try:
                    mapper = _Mapper(info.schema, columns, by_name, result.schema)
                    for batch in _batches(result.reader):
                        yield from mapper(batch)
                finally:
                    result.close()

        return self.ingest(info.name, batches(), info.schema, "append").rows


def dml_plan(tree: exp.Expression, row: Sequence[Any]) -> Plan:
    """The :class:`Plan` of a DELETE or UPDATE bound to one row of parameters: its placeholders
    are numbered in order (``?`` -> ``$1``, ``$2`` ...) so the rewriter can rearrange clauses."""
    if isinstance(tree, exp.Delete):
        kind, unsupported = "DELETE", ("using", "returning", "limit", "order", "cluster", "tables")
    elif isinstance(tree, exp.Update):
        kind, unsupported = "UPDATE", ("from", "from_", "returning", "limit", "order")
    else:
        raise Unimplemented(f"this statement is not supported; {SUPPORTED}")
    for key in unsupported:
        if tree.args.get(key):
            clause = key.rstrip("_").upper()
            raise Unimplemented(f"{kind} ... {clause} is not supported; {SUPPORTED}")
    if any(isinstance(node, exp.Select) for node in tree.walk() if node is not tree):
        raise Unimplemented(f"{kind} with a subquery is not supported: the condition and the new values "
                            "read only the row itself")
    tree = tree.copy()
    counter = 0
    for node in list(tree.walk(bfs=False)):
        if isinstance(node, exp.Placeholder):
            name = node.name if node.name != "?" else ""
            if name and not name.isdigit():
                raise InvalidRequest(f"named parameter ${name} is not supported; use ? or $1, $2 ...")
            counter += 1
            index = int(name) if name else counter
            if index < 1 or index > len(row):
                raise InvalidRequest(f"the statement uses parameter {index} but {len(row)} value(s) were bound")
            node.replace(exp.Placeholder(this=str(index)))
    table = tree.this
    name = target_name(table)
    alias = table.alias or name
    where = tree.args.get("where")
    condition = where.this if isinstance(where, exp.Where) else None
    if kind == "DELETE":
        return Plan(name, alias, condition, None, list(row))
    assignments: dict[str, exp.Expression] = {}
    for item in tree.expressions:
        if not isinstance(item, exp.EQ) or not isinstance(item.this, exp.Column):
            raise InvalidRequest("UPDATE ... SET takes column = expression pairs")
        column = item.this.name
        if column.lower() in {c.lower() for c in assignments}:
            raise InvalidRequest(f"UPDATE sets column {column!r} more than once")
        assignments[column] = item.expression
    if not assignments:
        raise InvalidRequest("UPDATE needs SET column = expression")
    return Plan(name, alias, condition, assignments, list(row))


def parameter_schema(node: Any, sql: str, count: int) -> pa.Schema:
    """The bind-parameter schema of a statement: the target columns' types for
    ``INSERT INTO t [(cols)] VALUES (?, ...)``, else ``count`` fields of unknown (null) type.
    ``node`` is anything with a ``catalog`` (the Flight server passes its node)."""
    unknown = pa.schema([pa.field(f"${i + 1}", pa.null()) for i in range(count)])
    if not count:
        return unknown
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except sqlglot.errors.SqlglotError:
        return unknown
    if not isinstance(tree, exp.Insert) or tree.expression is None:
        return unknown
    source = tree.expression.unnest() if isinstance(tree.expression, exp.Subquery) else tree.expression
    if not _all_placeholders(source):
        return unknown
    target, columns = tree.this, None
    if isinstance(target, exp.Schema):
        columns = [c.name for c in target.expressions]
        target = target.this
    try:
        info = node.catalog.find(target_name(target))
    except (InvalidRequest, NotFound):
        return unknown
    if info is None:
        return unknown
    by_lower = {f.name.lower(): f for f in info.schema}
    names = columns if columns is not None else info.schema.names
    fields = [by_lower.get(n.lower()) for n in names]
    if len(fields) != count or any(f is None for f in fields):
        return unknown
    return pa.schema([pa.field(f.name, f.type) for f in fields])


def declared_schema(target: exp.Schema) -> pa.Schema:
    """Arrow schema of ``CREATE TABLE t (<columns>)``, from a private sandboxed DuckDB."""
    probe = exp.Create(this=exp.Schema(this=exp.to_table("__miniodb_probe"), expressions=target.expressions),
                       kind="TABLE")
    con = duckdb.connect(":memory:", config=dict(_SANDBOX))
    try:
        con.execute("SET TimeZone='UTC'")
        con.execute(probe.sql(dialect="duckdb"))
        rel, to_client = client_types.project(con.sql("SELECT * FROM __miniodb_probe LIMIT 0"))
        return to_client(rel.to_arrow_reader()).schema  # the types query results have (INTERVAL: duration)
    except duckdb.Error as exc:
        raise InvalidRequest(str(exc).strip().splitlines()[0]) from exc
    finally:
        con.close()


def _source_sql(source: exp.Expression) -> str:
    return source.sql(dialect="duckdb")


def _all_placeholders(source: exp.Expression) -> bool:
    """``VALUES (?, ?, ...)``: a single row of bare positional placeholders."""
    if not isinstance(source, exp.Values) or len(source.expressions) != 1:
        return False
    row = source.expressions[0]
    items = row.expressions if isinstance(row, exp.Tuple) else [row]
    return bool(items) and all(isinstance(e, exp.Placeholder) and not e.args.get("this") for e in items)


def _batches(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    while True:
        try:
            yield reader.read_next_batch()
        except StopIteration:
            return


class _Mapper:
    """Source batch -> batch with the table's schema (positional, column-list or BY NAME)."""

    def __init__(self, schema: pa.Schema, columns: Sequence[str] | None, by_name: bool, source: pa.Schema):
        self.schema = schema
        table_cols = {n.lower(): n for n in schema.names}
        if by_name:
            names = list(source.names)
            unknown = [n for n in names if n.lower() not in table_cols]
            if unknown:
                raise InvalidRequest(f"INSERT BY NAME: columns {', '.join(map(repr, unknown))} are not in the table")
            target = [table_cols[n.lower()] for n in names]
        elif columns is not None:
            if len(columns) != len(source.names):
                raise InvalidRequest(f"INSERT lists {len(columns)} column(s) but the source gives "
                                     f"{len(source.names)} value(s) per row")
            unknown = [c for c in columns if c.lower() not in table_cols]
            if unknown:
                raise InvalidRequest(f"columns {', '.join(map(repr, unknown))} are not in the table")
            target = [table_cols[c.lower()] for c in columns]
        else:
            if len(source.names) != len(schema.names):
                raise InvalidRequest(
                    f"the table has {len(schema.names)} column(s) ({', '.join(schema.names)}) but the source "
                    f"gives {len(source.names)} value(s) per row; list the columns: INSERT INTO t (a, b) ...")
            target = list(schema.names)
        if len({t.lower() for t in target}) != len(target):
            raise InvalidRequest("a column is given more than once")
        self.target = target

    def __call__(self, batch: pa.RecordBatch) -> list[pa.RecordBatch]:
        if batch.num_rows == 0:
            return []
        table = pa.Table.from_batches([batch]).rename_columns(self.target)
        return conform(table, self.schema).to_batches()

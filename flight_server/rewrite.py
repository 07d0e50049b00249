"""DELETE and UPDATE: copy-on-write rewrite of a table's committed files, one strict commit.

What a statement does, step by step (:meth:`TableRewriter.apply`):

1. **Flush first.** The rows a DML reaches must be in files, so before it reads anything the
   node flushes the table - in server mode on *every live node* (the ``flush`` callable the
   composition root hands in sends the ``flush`` Flight action to each peer; a peer that
   cannot flush fails the statement with UNAVAILABLE rather than missing its rows). The
   alternative, having peers apply the change to their buffers, would need a second
   implementation of every predicate over buffers and the WAL; flushing reuses the one durable
   path and is cheap compared with rewriting files. Rows ingested *after* the flush are not
   touched by the statement (they arrived after it started) and are never lost: they stay in
   the buffer/WAL, or land in new files a strict commit does not remove.
2. **Candidates.** The manifest's files are pruned with their min/max statistics
   (:func:`flight_server.stats.prune`) using the WHERE constraints (``constraints`` callable,
   DuckDB's parser through ``query/analyze.py``, bound parameters substituted as literals).
3. **Per file, in DuckDB.** Each candidate is read into Arrow and registered with a private,
   sandboxed in-memory DuckDB; ``count(*) WHERE pred`` counts its matches (exact row count).
   Files without a match are left alone. DELETE keeps the rows where ``(pred) IS NOT TRUE``
   (a file whose every row matches is only removed); UPDATE projects
   ``CASE WHEN (pred) THEN CAST(expr AS <column type>) ELSE col END``. A value that does not
   fit the column is INVALID_ARGUMENT and nothing is written (checked once against an empty
   table before anything is read, and by the cast itself).
4. **One strict commit** per statement: every rewritten file at once
   (``commit_files(remove=old keys, add=new entries, strict=True)``). A new entry *inherits*
   ``node_id``, ``wal_seq`` and ``created_at`` of the file it replaces, file for file, so the
   coordinator's exactness rule (a query that pinned node X's buffer skips X's files with
   ``wal_seq`` above the pinned limit) and retention by age keep working. The new object
   keeps the old one's ``date=`` partition. If a compaction or another DML committed first
   (``FilesChanged``), the statement starts again from the manifest (bounded retries, then
   ``Conflict``/ABORTED); its own uploaded-but-uncommitted objects are deleted. The objects
   it replaced are never deleted here: that is the vacuum's job (snapshots, running queries).

Two DML statements on one table of one node run one at a time (a lock per table); across
nodes the strict commit makes the loser retry. Crash points (``flight_server/faults.py``):
``dml_uploaded`` (new objects written, not committed: the table is as before) and
``dml_committed`` (committed: the table is as after). A commit whose reply is lost may or
may not have landed: the client gets UNAVAILABLE and the table is either before or after.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from sqlglot import exp

from clients.errors import Conflict, InvalidRequest, MinioDBError

from .cache import FileCache
from .catalog import Catalog
from .metadata.base import FileEntry, FilesChanged, TableInfo
from .paths import data_file_key
from .persist import write_table_file
from .schema import conform
from .stats import Constraint, column_stats, prune
from .storage.base import ObjectStore

log = logging.getLogger("miniodb.rewrite")

SOURCE = "__miniodb_dml_source"
_SANDBOX = {"enable_external_access": False, "autoinstall_known_extensions": False,
            "autoload_known_extensions": False}
_DAY = re.compile(r"/date=(\d{4}-\d{2}-\d{2})/")

#: (SELECT sql over the table, table name) -> constraint sets for pruning, or None (no pruning).
ConstraintsFn = Callable[[str, str], list[list[Constraint]] | None]


@dataclass
class Plan:
    """A DELETE (``assignments`` None) or UPDATE of one table. Placeholders in ``where`` and the
    assignment expressions carry their index into ``params`` (``$1``, ``$2`` ... in order)."""

    table: str
    alias: str
    where: exp.Expression | None
    assignments: dict[str, exp.Expression] | None = None
    params: Sequence[Any] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return "DELETE" if self.assignments is None else "UPDATE"


def _write_file(data: pa.Table, path: Path, info: TableInfo) -> None:
    """The one Parquet write of this module: the table's layout (sort key, bloom filters)."""
    write_table_file(data, path, info)


def _quote(name: str) -> exp.Identifier:
    return exp.to_identifier(name, quoted=True)


def _bind(tree: exp.Expression, params: Sequence[Any]) -> tuple[str, list[Any]]:
    """SQL of ``tree`` with its indexed placeholders turned into ``?`` and their values in order."""
    tree = tree.copy()
    values: list[Any] = []
    for node in list(tree.walk(bfs=False)):
        if isinstance(node, exp.Placeholder):
            values.append(params[int(node.name) - 1])
            node.replace(exp.Placeholder())
    return tree.sql(dialect="duckdb"), values


def _literal(value: Any) -> exp.Expression | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | str):
        return exp.convert(value)
    return None


class TableRewriter:
    def __init__(self, node_id: str, catalog: Catalog, store: ObjectStore, file_cache: FileCache,
                 tmp_dir: str | Path, flush: Callable[[str], None], constraints: ConstraintsFn | None = None,
                 faults: Callable[[str], None] | None = None, retries: int = 5,
                 clock: Callable[[], float] = time.time):
        self.node_id = node_id
        self.catalog = catalog
        self.metadata = catalog.metadata
        self.store = store
        self.file_cache = file_cache
        self.tmp_dir = Path(tmp_dir)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.tmp_dir.glob("*.parquet"):  # left by a crash mid-statement
            stale.unlink(missing_ok=True)
        self.flush = flush
        self.constraints = constraints
        self.faults = faults or (lambda step: None)
        self.retries = retries
        self._clock = clock
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock_for(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    # -- one statement -------------------------------------------------------------------
    def apply(self, plan: Plan) -> int:
        """Rows deleted or updated (exact)."""
        info = self.catalog.get(plan.table)  # NotFound first: nothing flushed for a bad name
        with _Session(plan, info) as check:
            check.check()  # unknown columns, values that cannot fit: refused before any work
        with self._lock_for(info.name):
            self.flush(info.name)
            for attempt in range(1, self.retries + 1):
                info = self.catalog.get(plan.table)
                try:
                    return self._attempt(plan, info)
                except FilesChanged as exc:
                    log.info("%s on %s: %d file(s) changed under it (attempt %d), starting again",
                             plan.kind, info.name, len(exc.missing), attempt)
            raise Conflict(f"{plan.kind} on {info.name!r} gave up after {self.retries} attempts: other rewrites "
                           "(compaction or DML) kept changing its files; try again")

    def _attempt(self, plan: Plan, info: TableInfo) -> int:
        files = self.metadata.list_files(info.name)
        candidates = prune(files, info.schema, self._constraint_sets(plan)) if files else []
        affected = 0
        removed: list[str] = []
        added: list[FileEntry] = []
        committing = False
        try:
            with _Session(plan, info) as session, self.file_cache.pinned([f.key for f in candidates]):
                for entry in candidates:
                    path, _ = self.file_cache.path(entry.key)
                    data = conform(pq.read_table(path), info.schema)
                    matches, out = session.run(data)
                    if not matches:
                        continue
                    affected += matches
                    removed.append(entry.key)
                    if out is not None and out.num_rows:
                        added.append(self._upload(info, entry, out))
            if not removed:
                return 0
            self.faults("dml_uploaded")
            committing = True
            self.metadata.commit_files(info.name, info.table_id, added, remove=removed, strict=True,
                                       operation=plan.kind.lower())
        except BaseException as exc:
            # not committed (refused, or failed before the commit): nobody references the uploads.
            # A commit that failed otherwise (a lost reply) may have landed: they stay.
            if not committing or isinstance(exc, FilesChanged):
                self._delete_quietly([e.key for e in added])
            if isinstance(exc, duckdb.Error):
                raise InvalidRequest(f"{plan.kind} failed: {str(exc).strip().splitlines()[0]}") from exc
            raise
        self.faults("dml_committed")
        self.catalog.committed(info.name, info.table_id, added, remove=removed)
        log.info("%s on %s: %d row(s) in %d file(s) -> %d new file(s)", plan.kind, info.name, affected,
                 len(removed), len(added))
        return affected

    def _constraint_sets(self, plan: Plan) -> list[list[Constraint]] | None:
        if self.constraints is None or plan.where is None:
            return None
        where = plan.where.copy()
        for node in list(where.walk(bfs=False)):
            if isinstance(node, exp.Placeholder):
                lit = _literal(plan.params[int(node.name) - 1])
                node.replace(lit if lit is not None else exp.Placeholder())
        select = exp.select("*").from_(exp.Table(this=_quote(plan.table), alias=exp.TableAlias(
            this=_quote(plan.alias)))).where(where)
        try:
            return self.constraints(select.sql(dialect="duckdb"), plan.table)
        except Exception as exc:  # noqa: BLE001 - pruning is an optimisation: read every file instead
            log.debug("no pruning for %s: %s", plan.table, exc)
            return None

    def _upload(self, info: TableInfo, old: FileEntry, data: pa.Table) -> FileEntry:
        tmp = self.tmp_dir / f"{uuid.uuid4().hex}.parquet"
        try:
            _write_file(data, tmp, info)
            size = tmp.stat().st_size
            mins, maxs = column_stats(data)
            seq = self.metadata.next_sequence(f"file:{self.node_id}")
            key = data_file_key(info.name, _day_of(old.key, self._clock), self.node_id, seq)
            self.store.put_file(key, tmp)
            self.file_cache.adopt(key, tmp)
        finally:
            tmp.unlink(missing_ok=True)
        # inherits node_id, wal_seq and created_at: see the module docstring
        return FileEntry(key=key, rows=data.num_rows, size=size, min_values=mins, max_values=maxs,
                         node_id=old.node_id, created_at=old.created_at, columns=tuple(data.column_names),
                         wal_seq=old.wal_seq)

    def _delete_quietly(self, keys: list[str]) -> None:
        if not keys:
            return
        try:
            self.file_cache.discard(keys)
            self.store.delete_many(keys)
        except MinioDBError as exc:  # an orphan object costs space, never correctness
            log.warning("could not delete uncommitted objects %s: %s", keys, exc)


def _day_of(key: str, clock: Callable[[], float]) -> dt.date:
    m = _DAY.search(key)
    if m:
        try:
            return dt.date.fromisoformat(m.group(1))
        except ValueError:
            pass
    return dt.datetime.fromtimestamp(clock(), dt.UTC).date()


class _Session:
    """A private sandboxed DuckDB that evaluates one statement over one file's rows at a time."""

    def __init__(self, plan: Plan, info: TableInfo):
        self.plan = plan
        self.info = info
        self.con = duckdb.connect(":memory:", config=dict(_SANDBOX))
        self.con.execute("SET TimeZone='UTC'")
        self._types: dict[str, str] | None = None

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.con.close()

    def _source(self) -> exp.Table:
        return exp.Table(this=_quote(SOURCE), alias=exp.TableAlias(this=_quote(self.plan.alias)))

    def _pred(self) -> exp.Expression:
        return exp.paren(self.plan.where.copy()) if self.plan.where is not None else exp.true()

    def _exec(self, tree: exp.Expression) -> duckdb.DuckDBPyRelation:
        sql, values = _bind(tree, self.plan.params)
        return self.con.sql(sql, params=values or None)

    def run(self, data: pa.Table) -> tuple[int, pa.Table | None]:
        """(matching rows, the file's new contents) for one file's rows (schema: the table's)."""
        self.con.register(SOURCE, data)
        try:
            try:
                count = self._exec(exp.select("count(*)").from_(self._source()).where(self._pred()))
                matches = int(count.fetchall()[0][0])
                if not matches and data.num_rows:
                    return 0, None
                if self.plan.assignments is None:
                    if matches == data.num_rows and data.num_rows:
                        return matches, None
                    kept = exp.select("*").from_(self._source()).where(exp.Is(this=self._pred(), expression=exp.true()).not_())
                    out = self._exec(kept).to_arrow_table()
                else:
                    out = self._exec(self._projection()).to_arrow_table()
            except duckdb.Error as exc:
                raise InvalidRequest(f"{self.plan.kind} on {self.info.name!r}: "
                                     f"{str(exc).strip().splitlines()[0]}") from exc
        finally:
            self.con.unregister(SOURCE)
        return matches, conform(out, self.info.schema)

    def check(self) -> None:
        """Bind the statement over no rows, and evaluate each new value once over a row of
        nulls (``SET n = 'abc'`` on a number fails here, before anything is flushed)."""
        self.run(self.info.schema.empty_table())
        if not self.plan.assignments:
            return
        nulls = pa.table({f.name: pa.nulls(1, f.type) for f in self.info.schema}, schema=self.info.schema)
        self.con.register(SOURCE, nulls)
        try:
            self._exec(self._projection(values_only=True)).fetchall()
        except duckdb.Error as exc:
            raise InvalidRequest(f"UPDATE on {self.info.name!r}: {str(exc).strip().splitlines()[0]}") from exc
        finally:
            self.con.unregister(SOURCE)

    def _projection(self, values_only: bool = False) -> exp.Select:
        if self._types is None:
            rows = self.con.execute(f'DESCRIBE SELECT * FROM "{SOURCE}"').fetchall()
            self._types = {r[0].lower(): r[1] for r in rows}
        assignments = {k.lower(): v for k, v in (self.plan.assignments or {}).items()}
        unknown = [k for k in assignments if k not in self._types]
        if unknown:
            raise InvalidRequest(f"UPDATE: column(s) {', '.join(map(repr, unknown))} not in table "
                                 f"{self.info.name!r} (columns: {', '.join(self.info.schema.names)})")
        columns = []
        for f in self.info.schema:
            col = exp.column(_quote(f.name), table=_quote(self.plan.alias))
            new = assignments.get(f.name.lower())
            if new is None:
                columns.append(exp.alias_(col, _quote(f.name)))
                continue
            value = exp.cast(exp.paren(new.copy()), exp.DataType.build(self._types[f.name.lower()], dialect="duckdb"))
            if values_only:
                columns.append(exp.alias_(value, _quote(f.name)))
                continue
            case = exp.Case(ifs=[exp.If(this=self._pred(), true=value)], default=col)
            columns.append(exp.alias_(case, _quote(f.name)))
        return exp.select(*columns).from_(self._source())

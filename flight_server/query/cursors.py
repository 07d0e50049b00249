"""Request cursors of the engine's one DuckDB database, reused with the views they hold.

See :class:`CursorPool`. A table's view is what :meth:`QueryEngine._bind
<flight_server.query.engine.QueryEngine._bind>` creates; this module decides when a cursor's
view can be kept, and keeps the file list of a file-only view in a cursor variable.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

if TYPE_CHECKING:
    from .engine import ResolvedTable


def quote(name: str) -> str:
    """A DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def lit(text: str) -> str:
    """A DuckDB string literal."""
    return "'" + text.replace("'", "''") + "'"


def set_files(cur: duckdb.DuckDBPyConnection, var: str, paths: Sequence[str]) -> None:
    """Point the cursor variable ``var`` (see :func:`files_variable`) at ``paths``."""
    cur.execute(f"SET VARIABLE {var} = [{', '.join(lit(p) for p in paths)}]")


def files_variable(view: str) -> str:
    """The name of the cursor variable holding the file list of ``view`` (an identifier)."""
    return "__files_" + hashlib.sha1(view.encode()).hexdigest()[:16]


class CursorPool:
    """Idle request cursors, reused one request at a time, with the views they still hold.

    Creating a table's temp view costs DuckDB about as much as a small query; a reused cursor
    keeps the view while the table's files and columns stay the same. Only file-only views
    are kept (views over a buffer snapshot are dropped when the cursor comes back, so no old
    snapshot stays in memory), and a checked-out cursor holds exactly the views of its
    request's tables (others are dropped first), as a fresh cursor would. Cursors that failed,
    were interrupted or carry per-request bindings are closed instead.
    """

    def __init__(self, db: duckdb.DuckDBPyConnection, size: int = 8):
        self._db = db
        self.size = size
        self._idle: list[tuple[duckdb.DuckDBPyConnection, dict]] = []
        self._lock = threading.Lock()

    def take(self) -> tuple[duckdb.DuckDBPyConnection, dict]:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._db.cursor(), {}

    @staticmethod
    def bind(cur: duckdb.DuckDBPyConnection, views: dict, key: str, rt: ResolvedTable,
             create: Callable[[duckdb.DuckDBPyConnection, str, ResolvedTable, str | None], None],
             uniform: Callable[[Sequence[str]], bool] = lambda paths: False) -> None:
        """(Re)create the view of ``rt`` unless this cursor already holds an identical one.

        A view over files only, all of one schema, reads its file list from a variable of the
        cursor (``read_parquet(getvariable(...))``): when a query reads another pruned file set
        (a point lookup in another file), setting the variable costs DuckDB about half of
        re-creating the view, which binds every column's cast."""
        buffered = rt.buffer is not None and rt.buffer.num_rows > 0
        name = rt.name.lower()  # DuckDB names are case-insensitive
        held = views.get(name)
        paths = tuple(rt.paths)
        shape = (tuple(rt.columns), frozenset(rt.file_columns), tuple(sorted(rt.duration_units.items())))
        if not buffered and paths and not rt.hot and uniform(paths):
            sig = ("var", *shape)
            var = files_variable(name)
            if held is not None and held[1] == sig:
                if held[2] != paths:
                    set_files(cur, var, paths)
                    views[name] = (held[0], sig, paths)
                return
            create(cur, key, rt, var)
            views[name] = (key, sig, paths)
            return
        sig = None if buffered else (paths, *shape, rt.hot)
        if sig is not None and held is not None and held[1] == sig:
            return
        create(cur, key, rt, None)
        views[name] = (key, sig, paths)

    @staticmethod
    def forget(cur: duckdb.DuckDBPyConnection, views: dict, keep: set[str] = frozenset()) -> None:
        for name in [n for n in views if n not in keep]:
            key = views.pop(name)[0]
            cur.execute(f"DROP VIEW IF EXISTS {quote(name)}")
            cur.unregister(f"__buf_{key}")

    def give(self, cur: duckdb.DuckDBPyConnection, views: dict, reader: pa.RecordBatchReader | None,
             reuse: bool) -> None:
        if reuse:
            try:
                if reader is not None:
                    reader.close()  # a connection with an open result refuses the next query
                self.forget(cur, views, keep={n for n, held in views.items() if held[1] is not None})
                with self._lock:
                    if len(self._idle) < self.size:
                        self._idle.append((cur, views))
                        return
            except Exception:  # noqa: BLE001 - a cursor in doubt is closed, not reused
                pass
        try:
            cur.close()
        except duckdb.Error:
            pass

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for cur, _ in idle:
            try:
                cur.close()
            except duckdb.Error:
                pass

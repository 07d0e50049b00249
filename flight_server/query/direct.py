"""Run a statement whose result types are known already, without DuckDB's separate bind step.

DuckDB's relation API (``cursor.sql(text)`` then ``to_arrow_reader``) binds a statement to
learn its column types and then parses, binds and plans it again when it runs: two binds,
each of which binds every view the statement reads (on a point lookup over a 16-column
table, about a millisecond each). The engine needs the types before it runs a statement
for two things only: whether the result needs :mod:`~flight_server.client_types` mapping,
and the rows per result batch. Both depend on the statement's *shape* (its parse tree with
the literals of filters erased: a lookup with another key has the same result types), the
column types of the tables it reads and the types of its parameters, never on data.

So :class:`DirectRuns` remembers, per such key, the batch size of a shape whose result
passes to clients unchanged; the next statement of that shape runs in one step (DuckDB's
``_seam.submit``, what ``to_arrow_reader`` itself calls). A shape that needs mapping, a
statement over ``system.*`` tables or a time-travel view, and a DuckDB without that entry
point take the relation path, as before. ADBC prepares every new text first, and the
prepare's schema-only bind fills the key, so even the first execution of a text is direct.
"""

from __future__ import annotations

import datetime as dt
import decimal
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import Any

import duckdb
import pyarrow as pa

from .statement import Statement

try:  # DuckDB 2's Python layer: the call to_arrow_reader() makes (duckdb/_seam.py)
    from duckdb import _seam

    _SUBMIT = _seam.submit
except (ImportError, AttributeError):  # another DuckDB: every statement takes the relation path
    _SUBMIT = None

SIZE = 4096  # shapes remembered


def available() -> bool:
    return _SUBMIT is not None


# DuckDB types a Python int by its range: INTEGER, BIGINT, UBIGINT, HUGEINT, UHUGEINT
_INT_RANGES = ((-(1 << 31), 1 << 31, "int32"), (-(1 << 63), 1 << 63, "int64"), (0, 1 << 64, "uint64"),
               (-(1 << 127), 1 << 127, "int128"), (0, 1 << 128, "uint128"))


def param_kind(p: Any) -> Hashable | None:
    """What decides the DuckDB type of parameter value ``p`` (so two values of one kind bind a
    statement to the same result types), or None when that is not known."""
    if p is None or isinstance(p, bool | float | str):
        return type(p).__name__
    if isinstance(p, int):
        return next((name for low, high, name in _INT_RANGES if low <= p < high), None)
    if isinstance(p, dt.datetime):  # before date: a datetime is a date
        return "timestamptz" if p.tzinfo is not None else "timestamp"
    if isinstance(p, dt.date):
        return "date"
    if isinstance(p, dt.time):
        return "timetz" if p.tzinfo is not None else "time"
    if isinstance(p, bytes):
        return "blob"
    if isinstance(p, decimal.Decimal):  # DECIMAL(width, scale) from its digits and exponent
        t = p.as_tuple()
        return ("decimal", t.sign, len(t.digits), t.exponent)
    return None


class DirectRuns:
    """Batch sizes of statement shapes known to need no client type mapping (LRU)."""

    def __init__(self, size: int = SIZE):
        self.size = size
        self._known: OrderedDict[tuple, int] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(st: Statement, tables: Sequence[Any], params: Sequence[Any] | None) -> tuple | None:
        """The key of ``st`` over these resolved tables (``ResolvedTable``: name and column
        types), or None when the statement never runs directly."""
        if _SUBMIT is None or st.kind != "SELECT" or not st.shape or st.analysis is None:
            return None
        if st.analysis.qualified or st.analysis.at_refs or st.bound_sql:
            return None
        kinds = tuple(param_kind(p) for p in params) if params else ()
        if None in kinds:
            return None  # a value whose DuckDB type is not known from its kind: the relation path
        return (st.shape, kinds, tuple((rt.name.lower(), tuple(rt.columns)) for rt in tables))

    def get(self, key: tuple | None) -> int | None:
        if key is None:
            return None
        with self._lock:
            rows = self._known.get(key)
            if rows is not None:
                self._known.move_to_end(key)
            return rows

    def learn(self, key: tuple | None, batch_rows: int) -> None:
        if key is None:
            return
        with self._lock:
            self._known[key] = batch_rows
            self._known.move_to_end(key)
            while len(self._known) > self.size:
                self._known.popitem(last=False)

    @staticmethod
    def run(cur: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None,
            batch_rows: int) -> pa.RecordBatchReader:
        """Parse, bind, plan and stream ``sql`` once (the types are known: see the module doc)."""
        assert _SUBMIT is not None
        return _SUBMIT(cur, sql, list(params) if params else None, "stream", batch_rows).arrow_reader()

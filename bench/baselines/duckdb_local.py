"""The query ceiling: DuckDB in the bench process over the same Parquet files the node reads.

Each MinIODB table becomes a view over its Parquet files (``hive_partitioning=false``: the
``date=`` folders are not columns), so the very same SQL text runs on both sides.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import duckdb
import pyarrow as pa


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class DuckDBLocal:
    def __init__(self, threads: int = 0):
        config = {"threads": threads} if threads else {}
        self.db = duckdb.connect(":memory:", config=config)

    def view(self, name: str, files: Sequence[str]) -> None:
        if not files:
            raise ValueError(f"no Parquet files for {name!r}")
        paths = ", ".join(_lit(str(f)) for f in files)
        self.db.execute(f'CREATE OR REPLACE VIEW "{name}" AS SELECT * FROM '
                        f"read_parquet([{paths}], hive_partitioning=false, union_by_name=true)")

    def query(self, sql: str) -> pa.Table:
        return self.db.sql(sql).to_arrow_table()

    def timed(self, sql: str) -> tuple[float, pa.Table]:
        started = time.perf_counter()
        table = self.query(sql)
        return time.perf_counter() - started, table

    def close(self) -> None:
        self.db.close()

"""Baselines run side by side with MinIODB in the same bench run, each a separate process
(except DuckDB, which runs in the bench process, as an in-process query engine does):

* :mod:`~bench.baselines.raw_flight` - a pyarrow.flight server that only receives and returns
  batches: the transfer ceiling for ingest and export.
* :mod:`~bench.baselines.minimal_flightsql` - a minimal Flight SQL server that only runs DuckDB
  in memory: the protocol-overhead reference for small-query latency.
* :mod:`~bench.baselines.bare_json` - a bare ASGI endpoint that only parses the JSON: the
  REST ceiling.
* :mod:`~bench.baselines.duckdb_local` - DuckDB in-process over the node's Parquet files:
  the query ceiling.
"""

from __future__ import annotations

import json
from pathlib import Path


def write_ready(path: str | Path, info: dict) -> None:
    """Atomically write the ready file a :class:`bench.services.Service` waits for."""
    p = Path(path)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(p)

import datetime as dt
import time

import pyarrow as pa

from flight_server.catalog import Catalog
from flight_server.config import SnapshotSettings
from flight_server.metadata.base import FileEntry, TableConfig
from flight_server.metadata.sqlite import SQLiteMetadataStore
from flight_server.retention import RetentionSweeper
from flight_server.storage.local import LocalObjectStore
from flight_server.vacuum import Vacuum


def _us(d: dt.datetime) -> int:
    return int(d.replace(tzinfo=dt.UTC).timestamp() * 1_000_000)


def test_sweep_removes_only_expired_files(tmp_path):
    now = dt.datetime(2024, 6, 30)
    meta = SQLiteMetadataStore(tmp_path / "m.sqlite3")
    store = LocalObjectStore(tmp_path / "objects")
    cat = Catalog(meta)
    schema = pa.schema([("timestamp", pa.timestamp("us")), ("v", pa.int64())])
    info = cat.create("r", schema, TableConfig(retention_days=7))
    cat.create("keep", schema)  # no retention
    files = []
    for key, day in (("r/old.parquet", dt.datetime(2024, 6, 1)), ("r/new.parquet", dt.datetime(2024, 6, 29))):
        store.put_bytes(key, b"x")
        files.append(FileEntry(key=key, rows=1, size=1, min_values={"timestamp": _us(day)},
                               max_values={"timestamp": _us(day)}))
    meta.commit_files("r", info.table_id, files)
    removed_keys = []
    sweeper = RetentionSweeper(cat, store, default_days=0, clock=lambda: now.replace(tzinfo=dt.UTC).timestamp(),
                               on_removed=lambda t, keys: removed_keys.extend(keys))
    assert sweeper.sweep() == {"r": 1}
    assert [f.key for f in meta.list_files("r")] == ["r/new.parquet"]
    # retention only removes the file from the manifest (a "retention" version); the vacuum deletes it
    assert store.exists("r/old.parquet") and store.exists("r/new.parquet")
    assert [e.operation for e in meta.version_log(info.table_id).entries] == ["commit", "retention"]
    assert removed_keys == ["r/old.parquet"]
    assert sweeper.sweep() == {}
    later = time.time() + 1  # the store stamps commits with its clock (the real one here)
    vacuum = Vacuum(meta, SnapshotSettings(retention_versions=1, grace_seconds=0), lambda t, keys: store.delete_many(keys),
                    clock=lambda: later)
    assert vacuum.run().deleted == 1
    assert not store.exists("r/old.parquet") and store.exists("r/new.parquet")
    assert vacuum.run().deleted == 0

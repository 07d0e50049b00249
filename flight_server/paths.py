"""The only place object keys and node-local file names are built.

Object layout (in the bucket, or under the local storage root)::

    {table}/date=YYYY-MM-DD/{node_id}-{seq:012d}.parquet    committed data files
    _meta/backups/backup_YYYYMMDD_HHMMSS.json               metadata snapshots
    _meta/trash/YYYYMMDD_HHMMSS_{table}_{token}.json        objects of dropped tables, kept
                                                            while a backup may refer to them
    _wal/{node_id}/{seq:020d}.arrow                         a mirrored WAL segment (wal.mirror)
    _wal/{node_id}/{first:020d}-{last:020d}.bundle          segments mirrored in one upload round;
                                                            both deleted once persisted or adopted
"""

from __future__ import annotations

import datetime as dt
import re

TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
BACKUP_PREFIX = "_meta/backups/"
_BACKUP_NAME = re.compile(r"^backup_(\d{8})_(\d{6})\.json$")
BACKUP_FILE = re.compile(r"^backup_[A-Za-z0-9_\-]{1,64}\.json$")  # names accepted for a restore
TRASH_PREFIX = "_meta/trash/"
WAL_MIRROR_PREFIX = "_wal/"
_WAL_MIRROR_KEY = re.compile(r"^_wal/([A-Za-z0-9][A-Za-z0-9_.\-]{0,127})/(\d{20})(?:\.arrow|-(\d{20})\.bundle)$")
_TRASH_NAME = re.compile(r"^(\d{8})_(\d{6})_[A-Za-z0-9_]+_[0-9a-f]+\.json$")


def is_valid_table_name(name: str) -> bool:
    return bool(isinstance(name, str) and TABLE_NAME.match(name))


def data_file_key(table: str, day: dt.date, node_id: str, seq: int) -> str:
    return f"{table}/date={day.isoformat()}/{node_id}-{seq:012d}.parquet"


_DATA_FILE_DAY = re.compile(r"/date=(\d{4}-\d{2}-\d{2})/[^/]+\.parquet$")


def data_file_day(key: str) -> dt.date | None:
    """The day partition of a data file key (see :func:`data_file_key`), or None."""
    m = _DATA_FILE_DAY.search(key)
    if not m:
        return None
    try:
        return dt.date.fromisoformat(m.group(1))
    except ValueError:
        return None


def table_prefix(table: str) -> str:
    return f"{table}/"


def backup_key(when: dt.datetime) -> str:
    return f"{BACKUP_PREFIX}{backup_name(when)}"


def backup_name(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("backup_%Y%m%d_%H%M%S.json")


def parse_backup_name(name: str) -> dt.datetime | None:
    """The time a backup was taken, from its file name (``backup_YYYYMMDD_HHMMSS.json``)."""
    m = _BACKUP_NAME.match(name.rsplit("/", 1)[-1])
    if not m:
        return None
    return dt.datetime.strptime(m.group(1) + m.group(2), "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)


def cache_file_name(key: str) -> str:
    """Flat file name of a cached object (keys are unique and contain no '..')."""
    return key.replace("/", "__")


def trash_key(when: dt.datetime, table: str, token: str) -> str:
    return f"{TRASH_PREFIX}{when.astimezone(dt.UTC).strftime('%Y%m%d_%H%M%S')}_{table}_{token}.json"


def parse_trash_time(key: str) -> dt.datetime | None:
    m = _TRASH_NAME.match(key.rsplit("/", 1)[-1])
    if not m:
        return None
    return dt.datetime.strptime(m.group(1) + m.group(2), "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)


def wal_mirror_prefix(node_id: str | None = None) -> str:
    """``_wal/`` (every node's mirrored WAL) or ``_wal/{node_id}/`` (one node's)."""
    return WAL_MIRROR_PREFIX if node_id is None else f"{WAL_MIRROR_PREFIX}{node_id}/"


def wal_mirror_key(node_id: str, seq: int) -> str:
    return f"{WAL_MIRROR_PREFIX}{node_id}/{seq:020d}.arrow"


def wal_mirror_bundle_key(node_id: str, first: int, last: int) -> str:
    return f"{WAL_MIRROR_PREFIX}{node_id}/{first:020d}-{last:020d}.bundle"


def parse_wal_mirror_key(key: str) -> tuple[str, int, int] | None:
    """(node id, first, last WAL sequence) of a mirror object's key (first == last for a single
    segment's ``.arrow``), or None for any other key."""
    m = _WAL_MIRROR_KEY.match(key)
    if not m:
        return None
    first = int(m.group(2))
    return m.group(1), first, int(m.group(3)) if m.group(3) else first


def is_wal_mirror_bundle(key: str) -> bool:
    return key.endswith(".bundle")

"""The only place object keys and node-local file names are built.

Object layout (in the bucket, or under the local storage root)::

    {table}/date=YYYY-MM-DD/{node_id}-{seq:012d}.parquet    committed data files
    _meta/backups/backup_YYYYMMDD_HHMMSS.json               metadata snapshots
"""

from __future__ import annotations

import datetime as dt
import re

TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
BACKUP_PREFIX = "_meta/backups/"
_BACKUP_NAME = re.compile(r"^backup_(\d{8})_(\d{6})\.json$")


def is_valid_table_name(name: str) -> bool:
    return bool(isinstance(name, str) and TABLE_NAME.match(name))


def data_file_key(table: str, day: dt.date, node_id: str, seq: int) -> str:
    return f"{table}/date={day.isoformat()}/{node_id}-{seq:012d}.parquet"


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

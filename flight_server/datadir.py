"""One node per data directory: an OS file lock on ``<data_dir>/LOCK``, held for the node's life.

Two nodes on one folder would both replay and flush the same WAL, so rows would be counted
twice. The node takes an exclusive ``flock`` before it reads anything there (WAL replay
included); a second node finds the lock taken and refuses to start, naming the holder from
the JSON the holder wrote into the file (pid, host, addresses). The OS drops the lock when
the holding process ends, however it ends (``kill -9`` included), so a stale file never
blocks a restart: only a live holder does.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from clients.errors import Conflict

LOCK_NAME = "LOCK"


class DataDirLock:
    """``acquire()`` or raise :class:`Conflict`; ``update(addresses)`` once the ports are bound."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / LOCK_NAME
        self._fd: int | None = None
        self._info: dict = {}

    def acquire(self, **info) -> DataDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = _describe(_read(fd))
            os.close(fd)
            raise Conflict(f"data dir {self.path.parent} is in use by another node ({holder}); "
                           f"stop it or start this node with another --data-dir",
                           detail={"lock": str(self.path)}) from exc
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        self._info = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": time.time(), **info}
        self._write()
        return self

    def update(self, **info) -> None:
        """Record more about the holder (the bound addresses) for the next node's message."""
        if self._fd is None:
            return
        self._info.update(info)
        self._write()

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # the file stays (unlinking would race a node locking it now)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _write(self) -> None:
        data = json.dumps(self._info, sort_keys=True).encode() + b"\n"
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)


def _read(fd: int) -> dict:
    try:
        raw = os.pread(fd, 65536, 0)
        info = json.loads(raw.decode("utf-8", "replace") or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _describe(info: dict) -> str:
    """``pid 123 on host vm, flight grpc://127.0.0.1:8080`` from what the holder wrote."""
    parts = []
    if info.get("pid"):
        parts.append(f"pid {info['pid']}" + (f" on host {info['host']}" if info.get("host") else ""))
    addresses = info.get("addresses") or {}
    if isinstance(addresses, dict) and addresses.get("flight"):
        parts.append(f"flight {addresses['flight']}")
    elif info.get("flight_port") is not None:
        parts.append(f"flight port {info['flight_port']}")
    return ", ".join(parts) or "holder unknown"

"""LocalObjectStore: objects are files under a root folder (the embedded default).

Every write goes to a temporary file in the destination folder, is fsynced, renamed over
the final name with ``os.replace`` and the folder is fsynced, so a reader (or a crash)
sees either the whole old object or the whole new one. Temporary files are named
``.{name}.{random}.tmp`` and never show up in :meth:`LocalObjectStore.list`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from stat import S_ISREG
from typing import BinaryIO

from clients.errors import InvalidRequest, NotFound, Unavailable
from flight_server.storage.base import ObjectInfo, ObjectStore, validate_key, validate_prefix

TMP_SUFFIX = ".tmp"
_TMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
_MKDIR_RACE_ATTEMPTS = 5  # a concurrent delete() may remove an empty folder we just made


def is_temp_name(name: str) -> bool:
    """True for the temporary file names made by :func:`atomic_file`."""
    return bool(_TMP_NAME.match(name))


def fsync_dir(path: Path) -> None:
    """fsync a folder so a rename inside it is durable (best effort where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _mkstemp(path: Path) -> tuple[int, str]:
    """A temporary file next to ``path``, creating the folder (and surviving a racing rmdir)."""
    for attempt in range(_MKDIR_RACE_ATTEMPTS):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
        except FileNotFoundError:
            if attempt == _MKDIR_RACE_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _publish(tmp: str, path: Path) -> None:
    os.replace(tmp, path)
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """Write ``path`` atomically: yields a binary file; on success it replaces ``path``."""
    path = Path(path)
    fd, tmp = _mkstemp(path)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _publish(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_copy(src: str | Path, path: str | Path) -> int:
    """Copy ``src`` to ``path`` atomically (kernel-side copy where available); returns bytes."""
    path = Path(path)
    fd, tmp = _mkstemp(path)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)
        rfd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(rfd)
            size = os.fstat(rfd).st_size
        finally:
            os.close(rfd)
        _publish(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return size


def _mtime(st: os.stat_result) -> dt.datetime:
    return dt.datetime.fromtimestamp(st.st_mtime, tz=dt.UTC)


class LocalObjectStore(ObjectStore):
    """Objects as files under ``root``; ``local_path`` lets DuckDB read them in place."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = f"file://{self.root}"

    def __repr__(self) -> str:
        return f"LocalObjectStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    def _target(self, key: str) -> Path:
        path = self._path(key)
        if path.is_dir():
            raise InvalidRequest(f"object key {key!r} names a prefix that holds other objects")
        return path

    # -- writes ----------------------------------------------------------------------------
    def put_file(self, key: str, path: str | Path) -> int:
        return atomic_copy(path, self._target(key))

    def put_bytes(self, key: str, data: bytes) -> int:
        with atomic_file(self._target(key)) as f:
            f.write(data)
        return len(data)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, IsADirectoryError):
            return
        except PermissionError:
            if path.is_dir():  # some systems answer EPERM for unlink() on a folder
                return
            raise
        self._prune(path.parent)

    def _prune(self, folder: Path) -> None:
        """Remove empty folders from ``folder`` up to (not including) the root; best effort."""
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    # -- reads -----------------------------------------------------------------------------
    def _missing(self, key: str) -> NotFound:
        return NotFound(f"object {key!r} not found in {self.url}")

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise self._missing(key) from exc

    def get_to_file(self, key: str, path: str | Path) -> int:
        src = self._path(key)
        if not src.is_file():
            raise self._missing(key)
        try:
            return atomic_copy(src, path)
        except FileNotFoundError as exc:
            if not src.exists():  # deleted meanwhile
                raise self._missing(key) from exc
            raise

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def stat(self, key: str) -> ObjectInfo:
        try:
            st = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise self._missing(key) from exc
        if not S_ISREG(st.st_mode):
            raise self._missing(key)
        return ObjectInfo(key=key, size=st.st_size, last_modified=_mtime(st))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        # Walk only the deepest folder named completely by the prefix, then filter by it.
        base_key = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self.root.joinpath(*base_key.split("/")) if base_key else self.root
        found: list[ObjectInfo] = []
        for dirpath, _dirnames, filenames in os.walk(base):
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
            for name in filenames:
                if is_temp_name(name):
                    continue
                key = rel_dir + name
                if not key.startswith(prefix):
                    continue
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except FileNotFoundError:  # deleted while listing
                    continue
                found.append(ObjectInfo(key=key, size=st.st_size, last_modified=_mtime(st)))
        found.sort(key=lambda o: o.key)
        return iter(found)

    # -- health ----------------------------------------------------------------------------
    def check(self) -> None:
        if not self.root.is_dir():
            raise Unavailable(f"object store {self.url} is unavailable: the root folder does not exist")
        try:
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".check.", suffix=TMP_SUFFIX)
            os.close(fd)
            os.unlink(tmp)
        except OSError as exc:
            raise Unavailable(
                f"object store {self.url} is unavailable: the root folder is not writable "
                f"({exc.strerror or type(exc).__name__})"
            ) from exc

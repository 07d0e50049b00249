"""Table versions: the log every commit appends to, and how a table's file set at a version
is rebuilt from it (time travel, ``system.snapshots``, ``restore-table``, vacuum).

Every ``commit_files`` (flush, DML, compaction, retention, restore) writes, in the same atomic
step as the manifest change, one :class:`Version`: the data version the commit returned (the
global counter: unique across tables, so "version N" also orders commits of different tables),
its commit time, the operation (``flush``, ``retention``, ``restore``...), the entries it added
and the keys it removed. The log belongs to a table *incarnation* (``table_id``): a dropped and
re-created table starts a new history.

A :class:`VersionLog` is a *base* (the file set before its oldest entry) plus the entries in
version order. The file set at version ``V`` is the base with every entry numbered ``<= V``
applied. Readable versions are the entries of the log: ``V`` older than the oldest entry is
refused (it was trimmed, or the table had no commit yet).

Trimming (:func:`trim_count`, run by the vacuum) folds the oldest entries into the base: an
entry is kept while it is among the newest ``retention_versions`` AND younger than
``retention_seconds``; the newest entry (the current state) is always kept. A folded entry's
removed keys become *garbage* (key -> when it was removed); the vacuum deletes a garbage object
once no readable version references it and it was removed more than the grace period ago.

When a commit finds the log of its table empty (a table committed to before versions existed,
or after a metadata restore cleared the logs), it first copies the current manifest into the
base, so a rebuilt file set is never missing older files.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from clients.errors import InvalidRequest, NotFound

from .base import FileEntry


@dataclass(frozen=True)
class Version:
    """One commit of a table."""

    version: int
    committed_at: float
    operation: str
    added: tuple[FileEntry, ...] = ()
    removed: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"v": self.version, "t": self.committed_at, "op": self.operation,
                "add": [f.to_json() for f in self.added], "rm": list(self.removed)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Version:
        add = d.get("add") or []
        rm = d.get("rm") or []
        return cls(version=int(d["v"]), committed_at=float(d.get("t") or 0.0), operation=str(d.get("op") or "commit"),
                   added=tuple(FileEntry.from_json(e) for e in add if isinstance(e, Mapping)),
                   removed=tuple(str(k) for k in rm if isinstance(k, str)))


@dataclass(frozen=True)
class VersionLog:
    """The retained history of one table incarnation."""

    table_id: str
    base: Mapping[str, FileEntry] = field(default_factory=dict)
    entries: tuple[Version, ...] = ()  # ascending by version

    @property
    def oldest(self) -> int:
        return self.entries[0].version if self.entries else 0

    @property
    def newest(self) -> int:
        return self.entries[-1].version if self.entries else 0

    def states(self) -> Iterator[tuple[Version, dict[str, FileEntry]]]:
        """Each entry with the file set right after it (the same dict, updated in place)."""
        state = dict(self.base)
        for e in self.entries:
            apply(state, e)
            yield e, state

    def files_at(self, version: int, table: str = "") -> tuple[Version, list[FileEntry]]:
        """The newest entry numbered ``<= version`` and the file set it left (sorted by key)."""
        what = f"table {table!r}" if table else "the table"
        if not self.entries:
            raise NotFound(f"{what} has no retained versions (nothing committed yet)", detail={"table": table})
        if version < self.oldest:
            raise NotFound(f"version {version} of {what} is not retained: the oldest retained version is "
                           f"{self.oldest} (see system.snapshots; snapshot.retention_* settings)",
                           detail={"table": table, "version": version})
        found: tuple[Version, list[FileEntry]] | None = None
        for e, state in self.states():
            if e.version > version:
                break
            found = (e, sorted(state.values(), key=lambda f: f.key))
        assert found is not None
        return found

    def version_at(self, ts: float, table: str = "") -> int:
        """The newest version committed at or before epoch ``ts``."""
        best = 0
        limit = round(ts * 1e6)  # microseconds: a time read back from system.snapshots matches exactly
        for e in self.entries:
            if round(e.committed_at * 1e6) <= limit:
                best = e.version
        if not best:
            what = f"table {table!r}" if table else "the table"
            if not self.entries:
                raise NotFound(f"{what} has no retained versions (nothing committed yet)", detail={"table": table})
            raise NotFound(f"{what} has no retained version committed at or before that time: the oldest "
                           f"retained version was committed at epoch {self.entries[0].committed_at:.3f}",
                           detail={"table": table})
        return best

    def referenced(self) -> set[str]:
        """Object keys some readable version references: the oldest retained file set plus
        every key a later version added (each later file set is within that union)."""
        if not self.entries:
            return set()
        state = dict(self.base)
        apply(state, self.entries[0])
        keys = set(state)
        for e in self.entries[1:]:
            keys.update(f.key for f in e.added)
        return keys

    def summaries(self) -> Iterator[tuple[Version, int, int]]:
        """Each entry with the number of files and rows of the table right after it."""
        state = dict(self.base)
        rows = sum(f.rows for f in state.values())
        for e in self.entries:
            for k in e.removed:
                gone = state.pop(k, None)
                rows -= gone.rows if gone is not None else 0
            for f in e.added:
                old = state.get(f.key)
                rows += f.rows - (old.rows if old is not None else 0)
                state[f.key] = f
            yield e, len(state), rows

    def removals(self) -> dict[str, float]:
        """Keys removed by retained entries -> when (a candidate only once no version references it)."""
        out: dict[str, float] = {}
        for e in self.entries:
            for k in e.removed:
                out[k] = e.committed_at
        return out


def apply(state: dict[str, FileEntry], e: Version) -> None:
    for k in e.removed:
        state.pop(k, None)
    for f in e.added:
        state[f.key] = f


def trim_count(log: VersionLog, keep_versions: int, keep_seconds: float, now: float) -> int:
    """How many of the oldest entries fall outside retention (the newest is always kept)."""
    n = len(log.entries)
    if n <= 1:
        return 0
    drop = max(0, n - max(1, keep_versions))
    if keep_seconds > 0:
        cutoff = now - keep_seconds
        while drop < n - 1 and log.entries[drop].committed_at < cutoff:
            drop += 1
    return min(drop, n - 1)


def fold(log: VersionLog, upto: int) -> tuple[dict[str, FileEntry], list[int], dict[str, float]]:
    """Fold the entries numbered ``<= upto`` into the base: (new base, folded versions, garbage)."""
    base = dict(log.base)
    folded: list[int] = []
    garbage: dict[str, float] = {}
    for e in log.entries:
        if e.version > upto:
            break
        for k in e.removed:
            if k in base:
                garbage[k] = e.committed_at
        apply(base, e)
        folded.append(e.version)
    return base, folded, garbage


def check_version(version: Any) -> int:
    """A user-given version number (an integer, or its decimal text)."""
    if isinstance(version, bool) or not isinstance(version, int | str) or not str(version).strip().isdigit():
        raise InvalidRequest(f"version must be a positive integer, got {version!r}")
    v = int(str(version).strip())
    if v <= 0:
        raise InvalidRequest(f"version must be a positive integer, got {version!r}")
    return v

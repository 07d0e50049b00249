"""Whole-metadata snapshot and restore of the Redis store (mixed into RedisMetadataStore):
``miniodb backup``/``restore`` write and read this JSON; key layout: :mod:`.redis`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson
import redis

from clients.errors import InvalidRequest

from .base import SNAPSHOT_FORMAT, FileEntry, TableInfo

DATA_VERSION = "__data_version"


class RedisBackup:
    # -- snapshot ----------------------------------------------------------------------
    def snapshot(self) -> dict:
        def tx(pipe: redis.client.Pipeline) -> list:
            names = sorted(set(pipe.hkeys(self.k_tables)))
            pipe.multi()
            pipe.hgetall(self.k_tables)
            pipe.hgetall(self.k_versions)
            pipe.hgetall(self.k_watermarks)
            pipe.hgetall(self.k_counters)
            for n in names:
                pipe.hgetall(self.k_files(n))
            return names

        with self._guard("read a metadata snapshot"):
            # WATCH: a table created or dropped between listing names and EXEC retries the read.
            res = self._r.transaction(tx, self.k_tables, self.k_manifests, value_from_callable=False)
            names = sorted(set(res[0].keys()))
        tables_raw, versions, watermarks, counters, *file_maps = res
        tables = [self._table(tables_raw[n], n).to_json() for n in sorted(tables_raw)]
        files: dict[str, list] = {}
        for n, fmap in zip(names, file_maps, strict=False):
            if fmap:
                files[n] = [self._entry(fmap[k], n).to_json() for k in sorted(fmap)]
        return {
            "format": SNAPSHOT_FORMAT,
            "tables": tables,
            "files": files,
            "versions": {k: int(v) for k, v in versions.items() if k in tables_raw},
            "watermarks": {k: int(v) for k, v in watermarks.items()},
            "counters": {k: int(v) for k, v in counters.items()},
        }

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        if not isinstance(snapshot, Mapping) or snapshot.get("format") != SNAPSHOT_FORMAT:
            fmt = snapshot.get("format") if isinstance(snapshot, Mapping) else None
            raise InvalidRequest(f"unsupported metadata snapshot format {fmt!r}")
        try:
            tables = [TableInfo.from_json(t) for t in snapshot.get("tables", [])]
            files = {name: [FileEntry.from_json(e) for e in entries]
                     for name, entries in (snapshot.get("files") or {}).items()}
            defined = {t.name for t in tables}
            files = {name: entries for name, entries in files.items() if name in defined}
            watermarks = {str(k): int(v) for k, v in (snapshot.get("watermarks") or {}).items()}
            counters = {str(k): int(v) for k, v in (snapshot.get("counters") or {}).items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidRequest(f"metadata snapshot is malformed: {exc}") from exc
        for k in watermarks:
            if "|" not in k:
                raise InvalidRequest(f"metadata snapshot is malformed: watermark key {k!r}")
        names = {t.name for t in tables}

        def tolerant(fn: Callable[[], Any], default: Any) -> Any:
            try:
                return fn()
            except redis.ResponseError:  # a corrupt key of the wrong type: it is replaced below
                return default

        def tx(pipe: redis.client.Pipeline) -> None:
            old_names = set(tolerant(lambda: pipe.hkeys(self.k_tables), []))
            old_names |= set(tolerant(lambda: pipe.smembers(self.k_manifests), set()))
            logs = list(tolerant(lambda: pipe.hkeys(self.k_logs), []))
            current = tolerant(lambda: pipe.hgetall(self.k_counters), {})
            merged: dict[str, int] = {}
            for k, v in current.items():
                try:
                    merged[k] = int(v)
                except ValueError:
                    continue
            for k, v in counters.items():  # counters only move forward: no file key is ever reused
                merged[k] = max(merged.get(k, 0), v)
            version = max([merged.get(DATA_VERSION, 0), *counters.values(), 0])
            pipe.multi()
            pipe.delete(self.k_tables, self.k_ids, self.k_versions, self.k_manifests, self.k_watermarks,
                        self.k_counters, *[self.k_files(n) for n in old_names | names | set(files)])
            # the version logs describe the replaced manifests: history restarts from the restored
            # state (objects only they referenced are left in place, never deleted)
            pipe.delete(self.k_logs, *[self.k_log(i) for i in logs], *[self.k_log_base(i) for i in logs])
            for t in tables:
                version += 1
                pipe.hset(self.k_tables, t.name, orjson.dumps(t.to_json()).decode())
                pipe.hset(self.k_ids, t.name, t.table_id)
                pipe.hset(self.k_versions, t.name, version)
            for name, entries in files.items():
                if entries:
                    pipe.hset(self.k_files(name),
                              mapping={e.key: orjson.dumps(e.to_json()).decode() for e in entries})
                    pipe.sadd(self.k_manifests, name)
            if watermarks:
                pipe.hset(self.k_watermarks, mapping=watermarks)
            merged[DATA_VERSION] = version
            pipe.hset(self.k_counters, mapping=merged)

        self._write("restore the metadata",
                    lambda c: c.transaction(tx, self.k_tables, self.k_manifests, self.k_counters, self.k_logs))

"""The version log of the Redis store (mixed into RedisMetadataStore); model: :mod:`.versions`.

The commit script appends the log entry (redis_lua.COMMIT); reading and trimming are
WATCH/MULTI transactions here, so a commit landing meanwhile makes the trim re-read and retry.
Key layout: :mod:`.redis`.
"""

from __future__ import annotations

import orjson
import redis

from .versions import Version, VersionLog, fold


class RedisVersions:
    prefix: str
    k_logs: str
    k_garbage: str

    def k_log(self, table_id: str) -> str:
        return f"{self.prefix}:log:{table_id}"

    def k_log_base(self, table_id: str) -> str:
        return f"{self.prefix}:logbase:{table_id}"

    def _parse_log(self, table_id: str, raw_base: dict, raw_log: dict) -> VersionLog:
        base = {k: self._entry(v, f"version base {table_id}") for k, v in raw_base.items()}
        entries = []
        for raw in raw_log.values():
            try:
                entries.append(Version.from_json(self._decode(raw, f"a version of table id {table_id}")))
            except (KeyError, TypeError, ValueError):
                continue  # an unreadable entry is skipped (its version is then not readable)
        entries.sort(key=lambda e: e.version)
        return VersionLog(table_id, base, tuple(entries))

    def version_log(self, table_id: str) -> VersionLog:
        with self._guard("read a version log"):
            pipe = self._r.pipeline(transaction=True)
            pipe.hgetall(self.k_log_base(table_id))
            pipe.hgetall(self.k_log(table_id))
            raw_base, raw_log = pipe.execute()
        return self._parse_log(table_id, raw_base, raw_log)

    def version_logs(self) -> dict[str, str]:
        with self._guard("list version logs"):
            return dict(self._r.hgetall(self.k_logs))

    def trim_versions(self, table_id: str, upto: int) -> int:
        k_log, k_base = self.k_log(table_id), self.k_log_base(table_id)

        def tx(pipe: redis.client.Pipeline) -> int:
            log = self._parse_log(table_id, pipe.hgetall(k_base), pipe.hgetall(k_log))
            base, folded, garbage = fold(log, upto)
            if not folded:
                return 0
            pipe.multi()
            pipe.delete(k_base)
            for i in range(0, len(base), 1000):
                chunk = list(base.items())[i:i + 1000]
                pipe.hset(k_base, mapping={k: orjson.dumps(f.to_json()).decode() for k, f in chunk})
            pipe.hdel(k_log, *[str(v) for v in folded])
            if garbage:
                pipe.hset(self.k_garbage, mapping={k: orjson.dumps({"id": table_id, "t": t}).decode()
                                                   for k, t in garbage.items()})
            return len(folded)

        return int(self._write("trim a version log", lambda c: c.transaction(
            tx, k_log, k_base, value_from_callable=True)))

    def drop_version_log(self, table_id: str) -> None:
        def run(c: redis.Redis) -> None:
            pipe = c.pipeline(transaction=True)
            pipe.delete(self.k_log(table_id), self.k_log_base(table_id))
            pipe.hdel(self.k_logs, table_id)
            pipe.execute()

        self._write("drop a version log", run)

    def garbage(self) -> dict[str, tuple[str, float]]:
        with self._guard("read the garbage list"):
            raw = self._r.hgetall(self.k_garbage)
        out = {}
        for k, v in raw.items():
            try:
                d = orjson.loads(v)
                out[k] = (str(d["id"]), float(d["t"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
        return out

    def add_garbage(self, table_id: str, removed) -> None:
        if removed:
            mapping = {k: orjson.dumps({"id": table_id, "t": float(t)}).decode() for k, t in removed.items()}
            self._write("update the garbage list", lambda c: c.hset(self.k_garbage, mapping=mapping))

    def forget_garbage(self, keys: list[str]) -> None:
        if keys:
            self._write("update the garbage list", lambda c: c.hdel(self.k_garbage, *keys))

    def current_version(self) -> int:
        with self._guard("read the data version counter"):
            raw = self._r.hget(self.k_counters, "__data_version")
        return int(raw or 0)

"""Batch-id claims of exactly-once ingest in Redis (mixed into RedisMetadataStore).

One string key per batch id, ``P:batch:{id}``, holding JSON:

* ``{"s": "run", "node": ..., "inc": ...}`` with a short TTL (``ingest.dedup_claim_ttl``),
  renewed by the owner while it applies the batch: a node that dies leaves a claim that
  expires, so a retry elsewhere can proceed;
* ``{"s": "done", "rows": "N"}`` with the dedup window as TTL, written when the batch is
  acknowledged and again, in the commit script, with the files that hold its rows.

Every step is one Lua script (check and set are one atomic step, across all nodes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import orjson

# KEYS: batch key   ARGV: node, incarnation, ttl ms
_CLAIM = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, t = pcall(cjson.decode, cur)
  if ok and type(t) == 'table' then
    if t['s'] == 'done' then return {'done', tostring(t['rows'])} end
    if t['node'] ~= ARGV[1] then return {'busy', tostring(t['node'])} end
  end
end
redis.call('SET', KEYS[1], cjson.encode({s='run', node=ARGV[1], inc=ARGV[2]}), 'PX', ARGV[3])
return {'claimed', '0'}
"""

# KEYS: batch key   ARGV: node, incarnation, ttl ms (0: release)
_RENEW = """
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local ok, t = pcall(cjson.decode, cur)
if not ok or type(t) ~= 'table' or t['s'] ~= 'run' or t['node'] ~= ARGV[1] or t['inc'] ~= ARGV[2] then
  return 0
end
if tonumber(ARGV[3]) == 0 then redis.call('DEL', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
"""

# Appended to the file-commit script: KEYS[10..] batch keys, ARGV[tail]: window ms, rows per key.
COMMIT_BATCHES = """
local window = ARGV[i + 2]
for k = 10, #KEYS do
  redis.call('SET', KEYS[k], cjson.encode({s='done', rows=ARGV[i + 3 + k - 10]}), 'PX', window)
end
"""


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class RedisBatchClaims:
    """The batch-id part of the MetadataStore contract (see flight_server/metadata/base.py)."""

    prefix: str
    batch_window: float

    def k_batch(self, batch_id: str) -> str:
        return f"{self.prefix}:batch:{batch_id}"

    def _init_batches(self, client) -> None:
        self._claim_script = client.register_script(_CLAIM)
        self._renew_script = client.register_script(_RENEW)

    def commit_batch_args(self, batches: Mapping[str, int] | None) -> tuple[list[str], list]:
        """Extra KEYS and ARGV of the commit script for ``batches`` (see COMMIT_BATCHES)."""
        if not batches:
            return [], [0]
        return [self.k_batch(b) for b in batches], [_ms(self.batch_window), *(str(int(r)) for r in batches.values())]

    def claim_batch(self, batch_id, node_id, incarnation, ttl):
        res = self._write(f"claim batch {batch_id!r}", lambda c: self._claim_script(
            keys=[self.k_batch(batch_id)], args=[node_id, incarnation, _ms(ttl)]))
        state, value = res[0], res[1]
        if state == "done":
            return "done", int(value), ""
        if state == "busy":
            return "busy", 0, value
        return "claimed", 0, node_id

    def renew_batch(self, batch_id, node_id, incarnation, ttl) -> bool:
        return bool(self._write(f"renew the claim of batch {batch_id!r}", lambda c: self._renew_script(
            keys=[self.k_batch(batch_id)], args=[node_id, incarnation, _ms(ttl)])))

    def release_batch(self, batch_id, node_id, incarnation) -> None:
        self._write(f"release batch {batch_id!r}", lambda c: self._renew_script(
            keys=[self.k_batch(batch_id)], args=[node_id, incarnation, 0]))

    def finish_batch(self, batch_id, rows) -> None:
        value = orjson.dumps({"s": "done", "rows": str(int(rows))}).decode()
        self._write(f"record batch {batch_id!r}",
                    lambda c: c.set(self.k_batch(batch_id), value, px=_ms(self.batch_window)))

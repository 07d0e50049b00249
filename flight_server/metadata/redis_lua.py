"""The Redis metadata store's Lua scripts (each one atomic on the server) and its URL form.

Key layout and semantics: :mod:`flight_server.metadata.redis`.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from clients.errors import InvalidRequest

from .redis_batches import COMMIT_BATCHES

# -- scripts -------------------------------------------------------------------------------
# KEYS: tables, ids, versions, counters, files, manifests   ARGV: name, table_id, info
CREATE = """
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if cur then
  if cur == ARGV[2] then return {'ok', tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or 0)} end
  return {'exists'}
end
local v = redis.call('HINCRBY', KEYS[4], '__data_version', 1)
redis.call('DEL', KEYS[5])
redis.call('SREM', KEYS[6], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], v)
return {'ok', v}
"""

# KEYS: tables, ids, versions, counters   ARGV: name, table_id, expected sv, new sv, info
UPDATE = """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return {'notfound'} end
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local ok, t = pcall(cjson.decode, cur or '')
if not ok or type(t) ~= 'table' then return {'corrupt'} end
local sv = tonumber(t['schema_version'])
if sv ~= tonumber(ARGV[3]) then
  if sv == tonumber(ARGV[4]) and cur == ARGV[5] then
    return {'ok', tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or 0)}
  end
  return {'conflict', tostring(sv)}
end
local v = redis.call('HINCRBY', KEYS[4], '__data_version', 1)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[5])
redis.call('HSET', KEYS[3], ARGV[1], v)
return {'ok', v}
"""

# KEYS: tables, ids, versions, files, manifests, watermarks   ARGV: name
DROP = """
local id = redis.call('HGET', KEYS[2], ARGV[1])
if not id and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return {'notfound'} end
local files = redis.call('HVALS', KEYS[4])
redis.call('DEL', KEYS[4])
redis.call('SREM', KEYS[5], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if id then
  redis.call('HSET', KEYS[7], id, ARGV[1])
  local suffix = '|' .. id
  local fields = redis.call('HKEYS', KEYS[6])
  for i = 1, #fields do
    if string.sub(fields[i], -#suffix) == suffix then redis.call('HDEL', KEYS[6], fields[i]) end
  end
end
table.insert(files, 1, 'ok')
return files
"""

# KEYS: ids, versions, counters, files, manifests, watermarks, log, log base, logs, batch key * n_batches
# ARGV: name, table_id, since (0: none), strict ('1': every removed key must exist), n_add, (key, entry) * n_add, n_remove, key * n_remove,
#       wm_field, wm_seq, committed_at, operation, batch window ms, rows * n_batches
# The version log entry (versions.py, JSON) is assembled from the raw entry strings, so numbers
# in file statistics are never re-encoded by cjson.
COMMIT = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return {'notfound'} end
local since = tonumber(ARGV[3])
local strict = ARGV[4] == '1'
local i = 5
local n_add = tonumber(ARGV[i]); i = i + 1
local first_add = i
i = i + 2 * n_add
local n_remove = tonumber(ARGV[i]); i = i + 1
local first_remove = i
i = i + n_remove
local wm_field, wm_seq = ARGV[i], tonumber(ARGV[i + 1])
local old = 0
if wm_field ~= '' then old = tonumber(redis.call('HGET', KEYS[6], wm_field) or '0') or 0 end
if wm_field ~= '' and since > 0 and old >= since then return {'fenced', old} end
if strict then
  local missing = {}
  for j = first_remove, first_remove + n_remove - 1 do
    if redis.call('HEXISTS', KEYS[4], ARGV[j]) == 0 then table.insert(missing, ARGV[j]) end
  end
  if #missing > 0 then table.insert(missing, 1, 'changed'); return missing end
end
if redis.call('HLEN', KEYS[7]) == 0 then
  redis.call('DEL', KEYS[8])
  local cur = redis.call('HGETALL', KEYS[4])
  for c = 1, #cur, 1000 do
    redis.call('HSET', KEYS[8], unpack(cur, c, math.min(c + 999, #cur)))
  end
end
for j = first_remove, first_remove + n_remove - 1 do redis.call('HDEL', KEYS[4], ARGV[j]) end
for j = first_add, first_add + 2 * n_add - 1, 2 do redis.call('HSET', KEYS[4], ARGV[j], ARGV[j + 1]) end
if wm_field ~= '' and wm_seq > old then redis.call('HSET', KEYS[6], wm_field, wm_seq) end
local log_t, log_op = ARGV[i + 2], ARGV[i + 3]
i = i + 2
""" + COMMIT_BATCHES + """
local v = redis.call('HINCRBY', KEYS[3], '__data_version', 1)
redis.call('HSET', KEYS[2], ARGV[1], v)
redis.call('SADD', KEYS[5], ARGV[1])
local added = {}
for j = first_add + 1, first_add + 2 * n_add - 1, 2 do table.insert(added, ARGV[j]) end
local removed = {}
for j = first_remove, first_remove + n_remove - 1 do table.insert(removed, cjson.encode(ARGV[j])) end
redis.call('HSET', KEYS[7], v, '{"v":' .. v .. ',"t":' .. log_t .. ',"op":' .. cjson.encode(log_op) ..
  ',"add":[' .. table.concat(added, ',') .. '],"rm":[' .. table.concat(removed, ',') .. ']}')
redis.call('HSET', KEYS[9], ARGV[2], ARGV[1])
return {'ok', v}
"""

# KEYS: nodes, expiry   ARGV: now
LIVE_NODES = """
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for i = 1, #dead do
  redis.call('ZREM', KEYS[2], dead[i])
  redis.call('HDEL', KEYS[1], dead[i])
end
local live = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf')
if #live == 0 then return {} end
return redis.call('HMGET', KEYS[1], unpack(live))
"""



def parse_redis_url(url: str) -> dict:
    """``redis://host:port/db`` or ``redis+sentinel://a:1,b:2/master/db`` -> connection parts."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    netloc = parts.netloc.rsplit("@", 1)[-1]
    password = unquote(parts.password) if parts.password else ""
    path = [p for p in parts.path.split("/") if p]
    if scheme == "redis":
        if not netloc:
            raise InvalidRequest(f"metadata URL {url!r}: expected redis://host:port/db")
        host, _, port = netloc.rpartition(":") if ":" in netloc else (netloc, "", "6379")
        try:
            port_no = int(port)
            db = int(path[0]) if path else 0
        except ValueError as exc:
            raise InvalidRequest(f"metadata URL {url!r}: port and db must be integers") from exc
        return {"mode": "standalone", "host": host.strip("[]"), "port": port_no, "db": db, "password": password}
    if scheme == "redis+sentinel":
        addrs = []
        for item in netloc.split(","):
            item = item.strip()
            if not item:
                continue
            host, _, port = item.rpartition(":") if ":" in item else (item, "", "26379")
            try:
                addrs.append((host.strip("[]"), int(port)))
            except ValueError as exc:
                raise InvalidRequest(f"metadata URL {url!r}: bad sentinel address {item!r}") from exc
        if not addrs or not path:
            raise InvalidRequest(f"metadata URL {url!r}: expected redis+sentinel://host:port,.../master/db")
        try:
            db = int(path[1]) if len(path) > 1 else 0
        except ValueError as exc:
            raise InvalidRequest(f"metadata URL {url!r}: db must be an integer") from exc
        return {"mode": "sentinel", "sentinels": addrs, "master": path[0], "db": db, "password": password}
    raise InvalidRequest(f"not a Redis metadata URL: {url!r}")



"""Named, expiring leases in Redis (mixed into RedisMetadataStore): one string key per lease,
``P:lease:{name}``, holding the owner's token with a TTL.

* acquire: ``SET NX PX`` (one atomic step across all nodes); the holder acquiring again just
  extends it;
* renew / release: a Lua script that checks the owner first, so a node whose lease expired
  and was taken by another never extends or deletes the new holder's lease.

A node that dies stops renewing: its lease expires after ``ttl`` and another node takes it.
"""

from __future__ import annotations

import math

# KEYS: lease key   ARGV: owner, ttl ms
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""

# KEYS: lease key   ARGV: owner, ttl ms (0: release)
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[2]) == 0 then redis.call('DEL', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class RedisLeases:
    """The lease part of the MetadataStore contract (see flight_server/metadata/base.py)."""

    prefix: str

    def k_lease(self, name: str) -> str:
        return f"{self.prefix}:lease:{name}"

    def _init_leases(self, client) -> None:
        self._lease_acquire = client.register_script(_ACQUIRE)
        self._lease_renew = client.register_script(_RENEW)

    def acquire_lease(self, name: str, owner: str, ttl: float) -> bool:
        return bool(self._write(f"acquire lease {name!r}", lambda c: self._lease_acquire(
            keys=[self.k_lease(name)], args=[owner, _ms(ttl)])))

    def renew_lease(self, name: str, owner: str, ttl: float) -> bool:
        return bool(self._write(f"renew lease {name!r}", lambda c: self._lease_renew(
            keys=[self.k_lease(name)], args=[owner, _ms(ttl)])))

    def release_lease(self, name: str, owner: str) -> None:
        self._write(f"release lease {name!r}", lambda c: self._lease_renew(
            keys=[self.k_lease(name)], args=[owner, 0]))

    def lease_holder(self, name: str) -> str | None:
        with self._guard(f"read lease {name!r}"):
            return self._r.get(self.k_lease(name))

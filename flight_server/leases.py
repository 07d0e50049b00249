"""Holding a lease of the metadata store (``MetadataStore.acquire_lease``) while work runs:
one holder per name across the cluster (compaction: ``compaction:{table}``).

A holder's ``owner`` is ``{node_id}:{incarnation}``. A lease held by an earlier incarnation of
the same node (a process that died mid-work; node ids are unique in a cluster) is taken over at
once instead of being waited out.
"""

from __future__ import annotations

import logging
import threading

from clients.errors import MinioDBError

from .metadata.base import MetadataStore

log = logging.getLogger("miniodb.leases")


def acquire_lease(metadata: MetadataStore, name: str, owner: str, ttl: float) -> str | None:
    """Take the lease ``name``: None when ``owner`` holds it now, else the current holder."""
    if metadata.acquire_lease(name, owner, ttl):
        return None
    holder = metadata.lease_holder(name)
    if holder is None and metadata.acquire_lease(name, owner, ttl):
        return None  # it expired meanwhile
    node_id = owner.split(":", 1)[0]
    if holder is not None and holder != owner and holder.split(":", 1)[0] == node_id:
        log.info("taking over lease %s of this node's earlier incarnation", name)
        metadata.release_lease(name, holder)
        if metadata.acquire_lease(name, owner, ttl):
            return None
        holder = metadata.lease_holder(name)
    return holder or "unknown"


class LeaseKeeper:
    """Renews a held lease every ``ttl / 3`` seconds until :meth:`stop` (which releases it);
    ``held()`` turns False once a renewal finds it lost (expired, maybe taken by another)."""

    def __init__(self, metadata: MetadataStore, name: str, owner: str, ttl: float):
        self.metadata, self.name, self.owner, self.ttl = metadata, name, owner, ttl
        self._lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="miniodb-lease-keeper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                if not self.metadata.renew_lease(self.name, self.owner, self.ttl):
                    self._lost = True
                    log.warning("lease %s lost", self.name)
                    return
            except MinioDBError as exc:
                log.warning("lease %s not renewed: %s", self.name, exc)

    def held(self) -> bool:
        return not self._lost

    def confirm(self) -> bool:
        """Renew now (before a commit): False if the lease is no longer ours."""
        if not self._lost and not self.metadata.renew_lease(self.name, self.owner, self.ttl):
            self._lost = True
        return not self._lost

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.metadata.release_lease(self.name, self.owner)
        except MinioDBError as exc:  # it expires on its own
            log.warning("lease %s not released: %s", self.name, exc)

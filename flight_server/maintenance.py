"""A node's background loops: the registry heartbeat and the metadata maintenance (periodic
backups when enabled, deletion of expired retired objects). Both end when ``stopped`` is set."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from clients.errors import MinioDBError

from .backup import BackupService
from .config import MetadataSettings
from .metadata.base import MetadataStore, NodeInfo

log = logging.getLogger("miniodb.node")


class Heartbeat:
    """Registers the node in the metadata store every ``ttl / 3`` seconds (and reports the
    number of live nodes to ``on_live``)."""

    def __init__(self, metadata: MetadataStore, node_info: Callable[[], NodeInfo], ttl: float,
                 stopped: threading.Event, on_live: Callable[[int], None] = lambda n: None):
        self.metadata = metadata
        self.node_info = node_info
        self.ttl = ttl
        self.stopped = stopped
        self.on_live = on_live
        self._thread = threading.Thread(target=self._run, name="miniodb-registry", daemon=True)

    def beat(self) -> None:
        try:
            self.metadata.register_node(self.node_info(), ttl=self.ttl)
            self.on_live(len(self.metadata.live_nodes()))
        except MinioDBError as exc:
            log.warning("heartbeat failed: %s", exc)

    def start(self) -> Heartbeat:
        """One beat now (the node is live when start returns), then the loop."""
        self.beat()
        self._thread.start()
        return self

    def _run(self) -> None:
        interval = max(0.5, self.ttl / 3)
        while not self.stopped.wait(interval):
            self.beat()


class MetadataMaintenance:
    """Periodic metadata backup (when enabled) and deletion of expired retired objects."""

    def __init__(self, backups: BackupService, settings: MetadataSettings, stopped: threading.Event):
        self.backups = backups
        self.settings = settings
        self.stopped = stopped
        self._thread = threading.Thread(target=self._run, name="miniodb-backup", daemon=True)

    def start(self) -> MetadataMaintenance:
        self._thread.start()
        return self

    def _run(self) -> None:
        m = self.settings
        interval = m.backup_interval if m.backup_enabled else 3600.0
        while not self.stopped.wait(interval):
            try:
                if m.backup_enabled:
                    age = self.backups.latest_age()
                    if age is None or age >= 0.9 * m.backup_interval:  # another node may just have done it
                        self.backups.backup()
                self.backups.purge_trash()
            except MinioDBError as exc:
                log.warning("metadata backup failed: %s", exc)

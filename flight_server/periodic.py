"""One background thread that runs a job every ``interval`` seconds until stopped (retention,
compaction, vacuum): a failing run is logged and the next one comes on time."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from clients.errors import MinioDBError

log = logging.getLogger("miniodb.periodic")


class Periodic:
    def __init__(self, name: str, what: str, job: Callable[[], object], interval: Callable[[], float],
                 setup: Callable[[], None] | None = None, stop_timeout: float = 10.0):
        self.name = name  # thread name
        self.what = what  # for the log: "retention sweep", "vacuum", ...
        self._job = job
        self._interval = interval  # read each time: tests and settings may change it
        self._setup = setup  # run once on the thread first (e.g. lower its priority)
        self._stop_timeout = stop_timeout
        self.stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=self._stop_timeout)

    def _loop(self) -> None:
        if self._setup is not None:
            self._setup()
        while not self.stopped.wait(self._interval()):
            try:
                self._job()
            except MinioDBError as exc:
                log.warning("%s failed: %s", self.what, exc)
            except Exception:  # noqa: BLE001 - keep running later
                log.exception("%s failed", self.what)

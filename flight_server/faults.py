"""Crash points for tests: ``debug.crash_at`` (``MINIODB_DEBUG_CRASH_AT``) names one step of
a flush at which the node process kills itself with SIGKILL, or, as ``fail:<step>``, raises
an error there instead (the test then kills the node itself). Off (empty) in production.

Steps, in flush order: ``parquet_written`` (temp file written), ``object_put`` (object
uploaded, not committed), ``metadata_committed`` (catalog commit applied, WAL not yet
removed), ``commit_reply_lost`` (the commit was applied but its reply is lost: always raises
``Unavailable``), ``wal_remove`` (after the WAL floor is written and the first segment
retired, before the others). DELETE/UPDATE (``rewrite.py``): ``dml_uploaded`` (the rewritten
files are uploaded, not committed) and ``dml_committed`` (right after the strict commit).
Compaction (flight_server/compaction.py): ``compaction_uploaded`` (merged file uploaded, not
committed), ``compaction_committed`` (right after the swap commit).
"""

from __future__ import annotations

import logging
import os
import signal

from clients.errors import Internal, InvalidRequest, Unavailable

log = logging.getLogger("miniodb.faults")

STEPS = ("parquet_written", "object_put", "metadata_committed", "commit_reply_lost", "wal_remove",
         "cluster_fragment",  # a peer receiving a fragment of a distributed query
         "dml_uploaded", "dml_committed", "compaction_uploaded", "compaction_committed",
         "restore_flushed", "restore_committed")  # restore-table: buffers flushed / the commit applied


class CrashPoints:
    """Callable with a step name: does nothing unless the step is the configured one."""

    def __init__(self, spec: str = ""):
        spec = (spec or "").strip()
        self.fail = spec.startswith("fail:")
        self.step = spec[len("fail:"):] if self.fail else spec
        if self.step and self.step not in STEPS:
            raise InvalidRequest(f"debug.crash_at: unknown step {self.step!r}; use one of {', '.join(STEPS)} "
                                 "(optionally as fail:<step>)")
        if self.step:
            log.warning("crash point armed: %s at %s", "fail" if self.fail else "SIGKILL", self.step)

    def __bool__(self) -> bool:
        return bool(self.step)

    def __call__(self, step: str) -> None:
        if step != self.step:
            return
        if step == "commit_reply_lost":
            raise Unavailable("metadata store unavailable: the commit reply was lost (injected at commit_reply_lost)")
        if self.fail:
            raise Internal(f"injected failure at {step}")
        log.warning("crash point %s: SIGKILL", step)
        os.kill(os.getpid(), signal.SIGKILL)

"""The node's log keeps tracebacks although the Flight server sets ``sys.tracebacklimit = 0``."""

from __future__ import annotations

import io
import logging
import sys

from flight_server.logs import OperatorFormatter


def _fail_deep(n: int) -> None:
    if n == 0:
        raise ValueError("boom")
    _fail_deep(n - 1)


def test_logged_traceback_ignores_the_process_traceback_limit(monkeypatch):
    monkeypatch.setattr(sys, "tracebacklimit", 0, raising=False)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(OperatorFormatter("%(levelname)s %(message)s"))
    log = logging.getLogger("miniodb.test.logs")
    log.addHandler(handler)
    log.propagate = False
    try:
        try:
            _fail_deep(3)
        except ValueError:
            log.exception("flush failed")
    finally:
        log.removeHandler(handler)
    text = out.getvalue()
    assert "ERROR flush failed" in text
    assert "Traceback (most recent call last)" in text
    assert text.count("_fail_deep") >= 4  # the frames are there, not cut to zero
    assert "ValueError: boom" in text

"""Logging of a node process.

The Flight server sets ``sys.tracebacklimit = 0`` so that pyarrow attaches no Python traceback
to a status a client receives (flightsql/errors.py). That limit is process-wide, and the
``traceback`` module applies it to every traceback that does not name its own limit, the
standard logging formatter's included. The node's log keeps full tracebacks for operators: its
formatter names the limit explicitly.
"""

from __future__ import annotations

import io
import logging
import traceback

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
TRACEBACK_FRAMES = 64  # innermost frames kept in a logged traceback


class OperatorFormatter(logging.Formatter):
    """A formatter whose tracebacks ignore ``sys.tracebacklimit``."""

    def formatException(self, ei) -> str:  # noqa: N802 - logging's name
        out = io.StringIO()
        traceback.print_exception(ei[0], ei[1], ei[2], limit=-TRACEBACK_FRAMES, file=out)
        return out.getvalue().rstrip("\n")


def configure(level: str) -> None:
    """Log to stderr at ``level`` with full tracebacks."""
    handler = logging.StreamHandler()
    handler.setFormatter(OperatorFormatter(FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])

"""Error mapping at the Flight edge: ``clients.errors`` -> gRPC status, never a traceback.

pyarrow turns an ``ArrowInvalid``/``ArrowKeyError``/``NotImplementedError`` raised by a
handler (or by a DoGet stream's generator) into INVALID_ARGUMENT/NOT_FOUND/UNIMPLEMENTED and
appends the formatted exception to the status message (``Detail: Python exception: ...``).
:func:`quiet_tracebacks` sets ``sys.tracebacklimit = 0`` when the server starts, so that
detail is the exception's class and message only: no file paths, no source lines. Flight's
own error classes (unauthenticated, unavailable, cancelled, internal) never carry one.

``sys.tracebacklimit`` is process-wide: the log of an unexpected error (:func:`translate`)
therefore formats its traceback with an explicit limit, so the node's log keeps the frames.
"""

from __future__ import annotations

import errno
import functools
import logging
import sys
import traceback

import duckdb
import pyarrow as pa
import pyarrow.flight as flight

from clients import errors

log = logging.getLogger("miniodb.flight")
OUT_OF_MEMORY = ("the query needs more memory than the node allows (query.memory_limit); "
                 "narrow it, or retry when fewer queries run")

LOGGED_FRAMES = 64  # innermost frames of an internal error written to the node's log


class WireInvalid(pa.ArrowInvalid):
    """An error translated already (INVALID_ARGUMENT), raised as it is by :func:`flight_errors`."""

    __module__ = "miniodb"


class WireNotFound(pa.ArrowKeyError):
    """An error translated already (NOT_FOUND)."""

    __module__ = "miniodb"


class WireUnimplemented(pa.ArrowNotImplementedError):
    """An error translated already (UNIMPLEMENTED)."""

    __module__ = "miniodb"


def quiet_tracebacks() -> None:
    """No Python traceback in any status message of this process (see the module doc)."""
    sys.tracebacklimit = 0


def stream_error(exc: BaseException) -> errors.MinioDBError:
    """A result stream that failed mid-way (DuckDB's reader): the client-safe error
    (``Cancelled`` after CancelFlightInfo interrupted the query)."""
    if isinstance(exc, errors.MinioDBError):
        return exc
    text = str(exc).strip().split("\n")[0]
    if isinstance(exc, duckdb.InterruptException) or "INTERRUPT Error" in text:
        return errors.Cancelled("query cancelled")
    if "Out of Memory" in text:
        return errors.ResourceExhausted(OUT_OF_MEMORY)
    if isinstance(exc, OSError) and text.split(":")[0].endswith(" Error"):  # DuckDB, while producing rows
        return errors.InvalidRequest(text)
    return translate(exc)


def to_flight(err: errors.MinioDBError) -> Exception:
    """The exception to raise from a Flight handler for ``err``."""
    msg = errors.tag(err)
    status = err.grpc_status
    if status == "NOT_FOUND":
        return WireNotFound(msg)
    if status == "UNIMPLEMENTED":
        return WireUnimplemented(msg)
    if status == "UNAUTHENTICATED":
        return flight.FlightUnauthenticatedError(msg)
    if status == "PERMISSION_DENIED":
        return flight.FlightUnauthorizedError(msg)
    if status in ("UNAVAILABLE", "RESOURCE_EXHAUSTED"):  # pyarrow cannot send RESOURCE_EXHAUSTED
        return flight.FlightUnavailableError(msg)
    if status == "CANCELLED":
        return flight.FlightCancelledError(msg)
    if status == "INTERNAL":
        return flight.FlightInternalError(msg)
    # INVALID_ARGUMENT, ALREADY_EXISTS, FAILED_PRECONDITION: pyarrow offers one user-error
    # code; the precise kind travels in the [miniodb:code] tag.
    return WireInvalid(msg)


def translate(exc: BaseException) -> errors.MinioDBError:
    """Any exception as a client-safe MinIODB error (unknown ones become Internal, logged)."""
    if isinstance(exc, errors.MinioDBError):
        return exc
    if isinstance(exc, duckdb.InterruptException):
        return errors.Cancelled("query cancelled")
    if isinstance(exc, OSError | pa.ArrowException) and "INTERRUPT Error" in str(exc).split("\n")[0]:
        return errors.Cancelled("query cancelled")  # DuckDB's reader, interrupted while streaming
    if isinstance(exc, duckdb.ParserException | duckdb.BinderException | duckdb.CatalogException
                  | duckdb.ConversionException | duckdb.InvalidInputException | duckdb.SyntaxException
                  | duckdb.TypeMismatchException | duckdb.OutOfRangeException | duckdb.NotImplementedException
                  | duckdb.ConstraintException | duckdb.PermissionException):
        return errors.InvalidRequest(str(exc).strip())
    if isinstance(exc, duckdb.OutOfMemoryException | MemoryError):
        return errors.ResourceExhausted(OUT_OF_MEMORY)
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return errors.ResourceExhausted("the node's disk is full: writes are refused until space is freed "
                                        "(queries still answer)")
    if isinstance(exc, pa.ArrowInvalid | pa.ArrowTypeError):
        return errors.InvalidRequest(str(exc).split("\n")[0])
    log.error("internal error: %s", "".join(traceback.format_exception(exc, limit=-LOGGED_FRAMES)).rstrip())
    return errors.Internal("internal error; the node logged the details")


def flight_errors(fn):
    """Decorator for Flight handlers: every exception leaves as a clean gRPC status."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (WireInvalid, WireNotFound, WireUnimplemented, flight.FlightError):
            raise
        except BaseException as exc:  # noqa: BLE001 - the edge: nothing escapes untranslated
            raise to_flight(translate(exc)) from None

    return wrapper

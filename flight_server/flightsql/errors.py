"""Error mapping at the Flight edge: ``clients.errors`` -> gRPC status, never a traceback.

pyarrow turns an ``ArrowInvalid``/``ArrowKeyError``/``NotImplementedError`` raised by a
handler into INVALID_ARGUMENT/NOT_FOUND/UNIMPLEMENTED, but appends the Python traceback
(file paths, source lines) to the status message through ``traceback.format_exception``.
The wire exceptions below carry a marker; :func:`install_quiet_tracebacks` makes the
formatter render only the class name for them, so the client sees the code and the message
and nothing of the server's insides. Flight's own error classes (unauthenticated,
unavailable, cancelled, internal) never carry a traceback.
"""

from __future__ import annotations

import errno
import functools
import logging
import traceback

import duckdb
import pyarrow as pa
import pyarrow.flight as flight

from clients import errors

log = logging.getLogger("miniodb.flight")
OUT_OF_MEMORY = ("the query needs more memory than the node allows (query.memory_limit); "
                 "narrow it, or retry when fewer queries run")


class _Quiet:
    """Marker: format without a traceback."""


class WireInvalid(pa.ArrowInvalid, _Quiet):
    pass


class WireNotFound(pa.ArrowKeyError, _Quiet):
    pass


class WireUnimplemented(pa.ArrowNotImplementedError, _Quiet):
    pass


_installed = False


def install_quiet_tracebacks() -> None:
    global _installed
    if _installed:
        return
    original = traceback.format_exception

    @functools.wraps(original)
    def format_exception(exc, /, *args, **kwargs):
        value = args[0] if args else exc
        if isinstance(value, _Quiet) or isinstance(exc, _Quiet):
            return ["miniodb"]
        if isinstance(value, BaseException) and _in_result_stream(value):
            return [errors.tag(stream_error(value))]
        return original(exc, *args, **kwargs)

    traceback.format_exception = format_exception
    _installed = True


def _in_result_stream(exc: BaseException) -> bool:
    """Raised while pyarrow's C++ side streamed a result reader (``GeneratorStream``)."""
    tb = exc.__traceback__
    while tb is not None:
        if "_data_stream_next" in tb.tb_frame.f_code.co_name:
            return True
        tb = tb.tb_next
    return False


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
    log.exception("internal error")
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

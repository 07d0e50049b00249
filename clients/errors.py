"""The one error hierarchy of MinIODB, shared by the node, the gateway and the clients.

::

    MinioDBError                 code            gRPC status          HTTP
    ├── InvalidRequest           invalid_request INVALID_ARGUMENT     400
    │   └── PayloadTooLarge      payload_too_large INVALID_ARGUMENT   413
    ├── NotFound                 not_found       NOT_FOUND            404
    ├── AlreadyExists            already_exists  ALREADY_EXISTS       409
    ├── Conflict                 conflict        FAILED_PRECONDITION  409
    ├── Unauthenticated          unauthenticated UNAUTHENTICATED      401
    ├── PermissionDenied         permission_denied PERMISSION_DENIED  403
    ├── Unimplemented            unimplemented   UNIMPLEMENTED        501
    ├── Cancelled                cancelled       CANCELLED            499
    ├── Unavailable              unavailable     UNAVAILABLE          503
    ├── ResourceExhausted        resource_exhausted RESOURCE_EXHAUSTED* 507
    └── Internal                 internal        INTERNAL             500

    * pyarrow's Flight server cannot send RESOURCE_EXHAUSTED (its status mapping has no such
      code): the node sends UNAVAILABLE with the ``[miniodb:resource_exhausted]`` tag, and
      the clients turn it back into ResourceExhausted.

Errors are raised inside the node with these classes and translated only at the edges:
Flight (a gRPC status whose message starts with ``[code]``) and HTTP (status plus one JSON
body ``{ok: false, error, code, status}``). The clients translate the other way, so a
caller always catches the same class, whichever transport was used.
"""

from __future__ import annotations

import re


class MinioDBError(Exception):
    """Base of every MinIODB error. ``message`` is safe to show to a client."""

    code = "internal"
    http_status = 500
    grpc_status = "INTERNAL"

    def __init__(self, message: str = "", *, detail: dict | None = None):
        super().__init__(message)
        self.message = message
        self.detail = detail or {}

    def to_json(self) -> dict:
        return {"ok": False, "error": self.message, "code": self.code, "status": self.http_status}


class InvalidRequest(MinioDBError):
    code = "invalid_request"
    http_status = 400
    grpc_status = "INVALID_ARGUMENT"


class PayloadTooLarge(InvalidRequest):
    code = "payload_too_large"
    http_status = 413


class NotFound(MinioDBError):
    code = "not_found"
    http_status = 404
    grpc_status = "NOT_FOUND"


class AlreadyExists(MinioDBError):
    code = "already_exists"
    http_status = 409
    grpc_status = "ALREADY_EXISTS"


class Conflict(MinioDBError):
    code = "conflict"
    http_status = 409
    grpc_status = "FAILED_PRECONDITION"


class Unauthenticated(MinioDBError):
    code = "unauthenticated"
    http_status = 401
    grpc_status = "UNAUTHENTICATED"


class PermissionDenied(MinioDBError):
    code = "permission_denied"
    http_status = 403
    grpc_status = "PERMISSION_DENIED"


class Unimplemented(MinioDBError):
    code = "unimplemented"
    http_status = 501
    grpc_status = "UNIMPLEMENTED"


class Cancelled(MinioDBError):
    code = "cancelled"
    http_status = 499
    grpc_status = "CANCELLED"


class Unavailable(MinioDBError):
    code = "unavailable"
    http_status = 503
    grpc_status = "UNAVAILABLE"


class ResourceExhausted(MinioDBError):
    """The node's disk is full (writes refused) or a query passed its memory limit."""

    code = "resource_exhausted"
    http_status = 507
    grpc_status = "RESOURCE_EXHAUSTED"


class Internal(MinioDBError):
    code = "internal"
    http_status = 500
    grpc_status = "INTERNAL"


ALL_ERRORS: tuple[type[MinioDBError], ...] = (
    PayloadTooLarge,
    InvalidRequest,
    NotFound,
    AlreadyExists,
    Conflict,
    Unauthenticated,
    PermissionDenied,
    Unimplemented,
    Cancelled,
    Unavailable,
    ResourceExhausted,
    Internal,
)
BY_CODE: dict[str, type[MinioDBError]] = {cls.code: cls for cls in ALL_ERRORS}
BY_GRPC: dict[str, type[MinioDBError]] = {}
for _cls in reversed(ALL_ERRORS):  # the most general class of each status wins
    BY_GRPC[_cls.grpc_status] = _cls

_TAGGED = re.compile(r"\[miniodb:(?P<code>[a-z_]+)\]\s*(?P<msg>.*)", re.S)


def tag(err: MinioDBError) -> str:
    """Status message for the wire: ``[miniodb:code] message``; parsed back by :func:`parse`."""
    return f"[miniodb:{err.code}] {err.message}"


def parse(text: str, fallback: type[MinioDBError] = Internal) -> MinioDBError:
    """Rebuild an error from a status message made by :func:`tag` (or a plain one)."""
    m = _TAGGED.search(text or "")
    if not m:
        return fallback(_strip_grpc_noise(text or ""))
    cls = BY_CODE.get(m.group("code"), fallback)
    return cls(_strip_grpc_noise(m.group("msg")))


def _strip_grpc_noise(msg: str) -> str:
    # pyarrow appends ". Detail: ..." and gRPC client context lines; keep the first part.
    for marker in (". gRPC client debug context", "\ngRPC client debug context", ". Client context:",
                   ". Detail: Python exception"):
        idx = msg.find(marker)
        if idx >= 0:
            msg = msg[:idx]
    return msg.strip()

"""Request headers for the handlers: a handler reads a header of its call with :func:`header`.

A server given the node's call middleware (:mod:`flight_server.auth`) finds the headers
there; otherwise :class:`HeadersMiddlewareFactory` keeps them, and only for the calls whose
handlers read one (DoPut: the batch id; DoAction: the session cookie), so a query or a fetch
costs no Python upcall for middleware.
"""

from __future__ import annotations

import pyarrow.flight as flight

from .. import threadstate
from ..auth import HEADER_METHODS


class HeadersMiddleware(flight.ServerMiddleware):
    def __init__(self, headers: dict):
        self.headers = headers


class HeadersMiddlewareFactory(flight.ServerMiddlewareFactory):
    """Makes the incoming call headers readable by handlers (``context.get_middleware``)."""

    def start_call(self, info, headers):
        threadstate.pin()
        if info.method not in HEADER_METHODS:
            return None  # no handler of this call reads headers: no per-call Python upcalls
        return HeadersMiddleware(headers)


def header(context: flight.ServerCallContext, name: str) -> str:
    """A request header of the call: every middleware of this server keeps them as
    ``.headers`` (one middleware per call, so one Python upcall less per RPC)."""
    mw = context.get_middleware("call") or context.get_middleware("headers")
    if mw is None:
        return ""
    values = mw.headers.get(name) or mw.headers.get(name.lower()) or []
    return values[0] if values else ""

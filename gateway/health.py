"""The gateway's service routes: health for load balancers and orchestrators, the API's own
description (OpenAPI document, docs page) and the node status.

Three health endpoints, all unauthenticated:

* ``/api/v1/health`` (the deployment guide's): 200 when Flight, metadata and storage answer,
  else 503. Kept as it was.
* ``/api/v1/health/live``: 200 while this process serves HTTP. It never calls the node's
  dependencies, so a Redis or object store outage restarts nothing (the WAL keeps ingest
  going through it). Use it as the liveness probe.
* ``/api/v1/health/ready``: 200 only when the node answers over Flight, its metadata store and
  object store are reachable, its WAL is replayed and it is not draining (SIGTERM); else 503.
  Use it as the readiness probe and the load balancer's check (``deploy/haproxy/haproxy.cfg``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from clients import errors, protocol
from clients.errors import MinioDBError

from .docs import render_docs
from .openapi import openapi_document
from .output import JSONResponse

if TYPE_CHECKING:
    from .app import Gateway

PREFIX = "/api/v1"
CHECKS = ("flight", "metadata", "storage")


class ServiceRoutes:
    """Mixed into :class:`gateway.app.Gateway`: ``backend``, ``version``, ``call`` and ``action`` come from it."""

    _openapi: bytes | None = None
    _docs: str | None = None

    async def _node_health(self: Gateway) -> dict:
        """The node's health document, or a ``down`` one when Flight does not answer."""
        try:
            h = await self.call(self.backend.service.health)
            if not isinstance(h, dict):
                raise errors.Internal("the node sent no health report")
            return h
        except MinioDBError as err:
            return {"status": "down", "version": self.version, "node_id": None,
                    "checks": {"flight": f"down: {err.message}", "metadata": "unknown", "storage": "unknown"}}

    async def health(self: Gateway, request: Request) -> Response:
        h = await self._node_health()
        checks = h.get("checks") or {}
        body = {"status": h.get("status", "down"), "version": h.get("version", self.version),
                "node_id": h.get("node_id"), "checks": {k: checks.get(k, "unknown") for k in CHECKS}}
        return JSONResponse(body, status_code=200 if h.get("status") == "ok" else 503)

    async def live(self: Gateway, request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": self.version})

    async def ready(self: Gateway, request: Request) -> Response:
        h = await self._node_health()
        checks = h.get("checks") or {}
        draining = bool(h.get("draining", False))
        replayed = bool(h.get("wal_replayed", h.get("status") == "ok"))
        ok = h.get("status") == "ok" and replayed and not draining
        status = "ready" if ok else ("draining" if draining else "not_ready")
        body = {"status": status, "version": h.get("version", self.version), "node_id": h.get("node_id"),
                "draining": draining, "wal_replayed": replayed,
                "checks": {k: checks.get(k, "unknown") for k in CHECKS}}
        return JSONResponse(body, status_code=200 if ok else 503)

    async def openapi(self: Gateway, request: Request) -> Response:
        if self._openapi is None:
            self._openapi = orjson.dumps(openapi_document(self.version))
        return Response(self._openapi, media_type="application/json")

    async def docs(self: Gateway, request: Request) -> Response:
        """The API described by the gateway itself: no asset from a CDN (gateway/docs.py)."""
        if self._docs is None:
            self._docs = render_docs(openapi_document(self.version), f"{PREFIX}/openapi.json")
        return HTMLResponse(self._docs)

    async def status(self: Gateway, request: Request) -> Response:
        st = await self.action(request, protocol.ACTION_STATUS)
        return JSONResponse({"ok": True, **st})

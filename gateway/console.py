"""The web console on the REST port: ``GET /`` (the page) and ``GET /console/<asset>``.

The console is static HTML, CSS and JavaScript shipped inside the package
(``gateway/console/``, setuptools package data) and served from here; nothing loads from a
CDN, so it works behind a firewall. It reaches the node only through the public REST API
(``/api/v1/...``), in the browser: queries in Arrow IPC (``/api/v1/query?format=arrow``,
decoded by the vendored ``apache-arrow`` build in ``console/vendor/``), tables and cluster
through ``system.*`` tables and ``/api/v1/status``. The page itself holds no data, so it is
served without credentials; when the node requires a key every API call answers 401 and the
page asks for one (kept in ``sessionStorage`` only, sent as ``Authorization: Bearer``).

Cancel: the console aborts its fetch; the gateway then closes the Flight stream of the
result, which cancels the query on the node (``system.queries`` shows it ``cancelled``). The
Queries page cancels any running query by its id: ``POST /api/v1/queries/{query_id}/cancel``
(the node's ``cancel_query`` action; 404 when that query is not running there).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from importlib import resources

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from clients import protocol
from clients.errors import InvalidRequest, MinioDBError, NotFound
from clients.flight import Client

ASSET_DIR = "console"
# the only files served: name -> media type (no path from the URL ever reaches the file system)
ASSETS = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "query.js": "text/javascript; charset=utf-8",
    "pages.js": "text/javascript; charset=utf-8",
    "vendor/Arrow.es2015.min.js": "text/javascript; charset=utf-8",
    "vendor/apache-arrow-LICENSE.txt": "text/plain; charset=utf-8",
    "vendor/apache-arrow-NOTICE.txt": "text/plain; charset=utf-8",
}
# the page runs only its own scripts and talks only to this origin
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def _read(name: str) -> bytes:
    return resources.files(__package__).joinpath(ASSET_DIR, *name.split("/")).read_bytes()


class Console:
    """Serves the console page and its assets (read once, kept in memory)."""

    def __init__(self, version: str):
        self.version = version
        self._cache: dict[str, bytes] = {}

    def _asset(self, name: str) -> bytes:
        data = self._cache.get(name)
        if data is None:
            data = _read(name)
            if name == "index.html":
                data = data.replace(b"{{version}}", self.version.encode())
            self._cache[name] = data
        return data

    async def page(self, request: Request) -> Response:
        return Response(self._asset("index.html"), media_type="text/html; charset=utf-8",
                        headers={"content-security-policy": CSP, "cache-control": "no-cache",
                                 "x-content-type-options": "nosniff"})

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        media = ASSETS.get(name)
        if media is None:
            raise NotFound(f"no console asset {name!r}")
        return Response(self._asset(name), media_type=media,
                        headers={"cache-control": "no-cache", "x-content-type-options": "nosniff"})


QUERY_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def cancel_handler(gateway):
    """``POST /api/v1/queries/{query_id}/cancel``: stop a running query of ``system.queries``
    (the node's ``cancel_query`` action, sent with the caller's credentials)."""

    async def cancel(request: Request) -> Response:
        query_id = request.path_params["query_id"]
        if not QUERY_ID.match(query_id):
            raise InvalidRequest(f"invalid query id {query_id!r}")
        res = await gateway.action(request, protocol.ACTION_CANCEL_QUERY_ID, {"query_id": query_id})
        return Response(orjson.dumps({"ok": True, **(res or {})}), media_type="application/json")

    return cancel


PEER_TIMEOUT = 3.0  # seconds for a peer's health and status; a slower peer shows as unreachable


def _peer_client(uri: str, auth: str | None, tls_root_certs: bytes | None) -> Client:
    """A Flight client of a peer with the caller's credentials (a key, or a token any node accepts)."""
    creds: dict = {}
    scheme, _, value = (auth or "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        creds["token"] = value
    elif scheme.lower() == "basic" and value:
        try:
            user, _, password = base64.b64decode(value + "=" * (-len(value) % 4)).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidRequest("malformed Basic credentials") from None
        creds.update(username=user, password=password)
    return Client(uri, tls_root_certs=tls_root_certs, timeout=PEER_TIMEOUT, **creds)


def _load(status: dict) -> dict:
    """Buffers and WAL of one node's status document."""
    buffers = (status.get("buffers") or {}).values()
    return {"buffered_rows": sum(b.get("rows", 0) for b in buffers),
            "buffer_bytes": sum(b.get("bytes", 0) for b in buffers),
            "wal_bytes": status.get("wal_bytes"),
            "uptime_seconds": (status.get("node") or {}).get("uptime_seconds")}


def _peer(uri: str, auth: str | None, tls_root_certs: bytes | None) -> dict:
    """Health, buffers and WAL of a peer, asked over Flight (runs in a worker thread)."""
    try:
        with _peer_client(uri, auth, tls_root_certs) as c:
            return {"health": c.health().get("status", "down"), **_load(c.status())}
    except MinioDBError as err:
        return {"health": "unreachable", "error": err.message}


def cluster_handler(gateway):
    """``GET /api/v1/cluster``: every registered node with its health, role, buffers, WAL bytes,
    last heartbeat and version (peers asked in parallel, each within ``PEER_TIMEOUT``)."""

    async def cluster(request: Request) -> Response:
        client = gateway.backend.for_request(request)
        st = await gateway.call(client.status)
        health = await gateway.call(client.health)
        me = st.get("node") or {}
        nodes = [n for n in st.get("nodes") or [] if n.get("node_id")]
        if not any(n["node_id"] == me.get("node_id") for n in nodes):
            nodes.insert(0, me)
        auth = request.headers.get("authorization")
        certs = gateway.config.tls_root_certs
        peers = [n for n in nodes if n["node_id"] != me.get("node_id")]
        answers = await asyncio.gather(*(gateway.call(_peer, n["flight_uri"], auth, certs) for n in peers))
        by_id = {n["node_id"]: a for n, a in zip(peers, answers, strict=True)}
        out = []
        for n in nodes:
            row = {k: n.get(k) for k in ("node_id", "version", "flight_uri", "rest_uri", "started_at", "last_seen")}
            if n["node_id"] == me.get("node_id"):
                row.update(role="coordinator", health=health.get("status", "down"), **_load(st))
            else:
                row.update(role="peer", **by_id[n["node_id"]])
            out.append(row)
        body = {"ok": True, "self": me.get("node_id"), "nodes": out}
        return Response(orjson.dumps(body), media_type="application/json")

    return cluster


def console_routes(gateway, wrap, prefix: str = "/api/v1") -> list[Route]:
    """``GET /``, ``GET /console/<asset>``, the query cancel and cluster routes; ``wrap`` is the
    gateway's error wrapper (one JSON error body, never a stack trace)."""
    c = Console(gateway.version)
    return [Route("/", wrap(c.page), methods=["GET"]),
            Route("/console/{name:path}", wrap(c.asset), methods=["GET"]),
            Route(prefix + "/queries/{query_id}/cancel", wrap(cancel_handler(gateway)), methods=["POST"]),
            Route(prefix + "/cluster", wrap(cluster_handler(gateway)), methods=["GET"])]

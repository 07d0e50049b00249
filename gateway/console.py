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

import re
from importlib import resources

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from clients import protocol
from clients.errors import InvalidRequest, NotFound

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


def console_routes(gateway, wrap, prefix: str = "/api/v1") -> list[Route]:
    """``GET /``, ``GET /console/<asset>`` and the query cancel route; ``wrap`` is the
    gateway's error wrapper (one JSON error body, never a stack trace)."""
    c = Console(gateway.version)
    return [Route("/", wrap(c.page), methods=["GET"]),
            Route("/console/{name:path}", wrap(c.asset), methods=["GET"]),
            Route(prefix + "/queries/{query_id}/cancel", wrap(cancel_handler(gateway)), methods=["POST"])]

"""Small threaded HTTP listeners: Prometheus ``/metrics`` and the node's health endpoint.

The full REST API is the gateway (``gateway/``); until it is mounted, the REST port answers
``GET /api/v1/health`` from here so load balancers can check the node.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {}

    def do_GET(self):  # noqa: N802 - http.server API
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        route = self.routes.get(path)
        if route is None:
            status, ctype, body = 404, "application/json", orjson.dumps(
                {"ok": False, "error": f"no route {path}", "code": "not_found", "status": 404})
        else:
            try:
                status, ctype, body = route()
            except Exception:  # noqa: BLE001 - never a stack trace to a client
                status, ctype, body = 500, "application/json", orjson.dumps(
                    {"ok": False, "error": "internal error", "code": "internal", "status": 500})
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # silence per-request logging
        pass


class HttpListener:
    def __init__(self, host: str, port: int, routes: dict[str, Callable[[], tuple[int, str, bytes]]],
                 ssl_context=None):
        handler = type("Handler", (_Handler,), {"routes": routes})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        if ssl_context is not None:
            self.server.socket = ssl_context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name=f"http-{self.port}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

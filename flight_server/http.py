"""Small threaded HTTP listener for Prometheus ``/metrics``.

The REST port runs the gateway (``gateway/``, uvicorn), health checks included.
"""

from __future__ import annotations

import socket
import ssl
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


class _Server(ThreadingHTTPServer):
    """With an SSL context, the TLS handshake runs in the connection's own thread (with a
    timeout), so a slow or plaintext client never stalls the accept loop."""

    daemon_threads = True
    ssl_context: ssl.SSLContext | None = None
    handshake_timeout = 10.0

    def finish_request(self, request, client_address):
        if self.ssl_context is None:
            return super().finish_request(request, client_address)
        try:
            request.settimeout(self.handshake_timeout)
            conn = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return None  # not TLS, or a failed handshake: drop the connection
        try:
            conn.settimeout(None)
            return super().finish_request(conn, client_address)
        finally:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()


class HttpListener:
    def __init__(self, host: str, port: int, routes: dict[str, Callable[[], tuple[int, str, bytes]]],
                 ssl_context=None):
        handler = type("Handler", (_Handler,), {"routes": routes})
        self.server = _Server((host, port), handler)
        self.server.ssl_context = ssl_context
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name=f"http-{self.port}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

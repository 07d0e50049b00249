"""Run the gateway with uvicorn: in a background thread (inside ``miniodb serve``, on the REST
port) or in the foreground (``miniodb gateway``).

The listening socket is bound here, before uvicorn starts, so port 0 works and the bound
port is known at once (``GatewayServer.port``).
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time

import uvicorn

from clients.errors import Unavailable

from .app import GatewayConfig, create_app

log = logging.getLogger("miniodb.gateway")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise Unavailable(f"rest port {port} is already in use on {host or '0.0.0.0'}") from exc
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def uvicorn_config(app, *, ssl_certfile: str | None = None, ssl_keyfile: str | None = None,
                   log_level: str = "warning") -> uvicorn.Config:
    return uvicorn.Config(
        app,
        log_level=log_level.lower(),
        access_log=False,
        lifespan="on",
        ssl_certfile=ssl_certfile or None,
        ssl_keyfile=ssl_keyfile or None,
        timeout_keep_alive=30,
        server_header=False,
    )


class GatewayServer:
    """uvicorn serving the gateway app in a daemon thread; ``start()`` returns once it listens."""

    def __init__(self, config: GatewayConfig, host: str = "0.0.0.0", port: int = 8081, *,
                 ssl_certfile: str | None = None, ssl_keyfile: str | None = None, log_level: str = "warning",
                 app=None):
        self.app = app if app is not None else create_app(config)
        self._sock = _bind(host, port)
        self.host = host
        self.port = self._sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn_config(self.app, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile,
                                                     log_level=log_level))
        self._thread = threading.Thread(target=self._run, name=f"miniodb-rest-{self.port}", daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc
            log.exception("REST gateway stopped")

    def start(self, timeout: float = 30.0) -> GatewayServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"the REST gateway did not start: {self._error!r}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the REST gateway did not start within {timeout}s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout)
        try:
            self._sock.close()
        except OSError:
            pass


def serve(config: GatewayConfig, host: str = "0.0.0.0", port: int = 8081, *, ssl_certfile: str | None = None,
          ssl_keyfile: str | None = None, log_level: str = "info", ready=None) -> None:
    """Run the gateway in the foreground until SIGINT/SIGTERM (uvicorn handles the signals)."""
    sock = _bind(host, port)
    server = uvicorn.Server(uvicorn_config(create_app(config), ssl_certfile=ssl_certfile,
                                           ssl_keyfile=ssl_keyfile, log_level=log_level))
    if ready is not None:
        threading.Thread(target=_announce, args=(server, sock, ready), daemon=True).start()
    server.run(sockets=[sock])


def _announce(server: uvicorn.Server, sock: socket.socket, ready) -> None:
    while not server.started and not server.should_exit:
        time.sleep(0.01)
    if server.started:
        ready(sock.getsockname()[1])

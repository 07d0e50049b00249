"""Listening addresses: a taken port as one clear error, and the addresses a user can paste.

gRPC reports a port in use as ``ArrowException: Server did not start properly`` and uvicorn
or http.server as a bare ``OSError``; the node checks its ports before it starts anything, and
translates a bind that fails later anyway (another process won the race) into the same
message: ``flight port 8080 is already in use on 127.0.0.1``.

Addresses: peers register the *advertised* host (``server.advertise_host``, else this
machine's name when bound to all interfaces); the ready message and the ready file give the
*local* one, which a client on the same machine can always dial (``localhost`` when bound to
all interfaces).
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Iterator

import pyarrow as pa

from clients.errors import Unavailable

ALL_INTERFACES = ("0.0.0.0", "::", "")


def listeners(settings) -> list[tuple[str, int]]:
    s = settings.server
    return [("flight", s.grpc_port), ("rest", s.rest_port), ("metrics", s.metrics_port)]


def port_in_use(host: str, port: int) -> bool:
    """True when binding ``host:port`` fails with EADDRINUSE (port 0 is never in use)."""
    if not port:
        return False
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the listeners do
        try:
            sock.bind((host or "0.0.0.0", port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _in_use_error(name: str, host: str, port: int) -> Unavailable:
    where = host or "0.0.0.0"
    return Unavailable(f"{name} port {port} is already in use on {where}; stop what listens there "
                       f"or choose another port (--{name}-port)", detail={"port": port, "listener": name})


def check_free(settings) -> None:
    """Raise :class:`Unavailable` naming the first configured port another process holds."""
    host = settings.server.host
    for name, port in listeners(settings):
        if port_in_use(host, port):
            raise _in_use_error(name, host, port)


@contextlib.contextmanager
def bind_errors(settings) -> Iterator[None]:
    """Translate a failed bind while the listeners start into the one-line error."""
    try:
        yield
    except (OSError, pa.ArrowException) as exc:
        bind_failed = isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE or (
            isinstance(exc, pa.ArrowException) and "did not start" in str(exc))
        if not bind_failed:
            raise
        host = settings.server.host
        for name, port in listeners(settings):
            if port_in_use(host, port):
                raise _in_use_error(name, host, port) from exc
        raise Unavailable(f"cannot listen on {host or '0.0.0.0'}: {exc}") from exc


def advertised_host(settings) -> str:
    """The host peers and clients elsewhere should dial: the configured one, else this machine's name."""
    if settings.server.advertise_host:
        return settings.server.advertise_host
    host = settings.server.host
    return socket.gethostname() if host in ALL_INTERFACES else host


def local_host(settings) -> str:
    """The host a client on this machine can paste: ``localhost`` when bound to all interfaces."""
    host = settings.server.host
    if host in ALL_INTERFACES:
        return "localhost"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def local_addresses(settings, advertised: dict[str, str]) -> dict[str, str]:
    """The advertised addresses with the local host in place of the advertised one."""
    adv = advertised_host(settings)
    adv = f"[{adv}]" if ":" in adv and not adv.startswith("[") else adv
    local = local_host(settings)
    return {k: v.replace(f"://{adv}:", f"://{local}:", 1) for k, v in advertised.items()}


def ready_message(node_id: str, settings, addresses: dict[str, str]) -> str:
    """``MinIODB node n1 ready: flight grpc://localhost:8080, ... (bound to all interfaces)``."""
    parts = ", ".join(f"{k} {v}" for k, v in addresses.items())
    host = settings.server.host
    where = "bound to all interfaces" if host in ALL_INTERFACES else f"bound to {host}"
    adv = settings.server.advertise_host
    if adv:
        where += f", advertised to peers as {adv}"
    return f"MinIODB node {node_id} ready: {parts} ({where})"

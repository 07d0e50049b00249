"""``miniodb serve``: the composition root of a node process.

It puts a process together from the parts that must not know each other: the node
(``flight_server.node``) and the REST gateway (``gateway``), which reaches the node only
through Flight (its own port on this host). ``clients/cli.py`` finds this command through the
``miniodb.commands`` entry point group and loads it only when it runs.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

import click


@click.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="YAML settings file (settings: defaults < this file < MINIODB_* variables < these options)")
@click.option("--data-dir", default=None, help="data folder (WAL, cache, embedded storage)  [default: ./data]")
@click.option("--host", default=None, help="interface to listen on  [default: 0.0.0.0, all interfaces]")
@click.option("--flight-port", type=int, default=None, help="Flight SQL port (0: any free port)  [default: 8080]")
@click.option("--rest-port", type=int, default=None, help="REST gateway port (0: any free port)  [default: 8081]")
@click.option("--metrics-port", type=int, default=None,
              help="Prometheus metrics port (0: any free port)  [default: 9090]")
@click.option("--node-id", default=None, help="this node's id in the cluster  [default: the host name]")
@click.option("--ready-file", type=click.Path(dir_okay=False), default=None,
              help="write the listener URIs as JSON here once every listener is up")
@click.option("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR  [default: INFO]")
def serve(config_file, data_dir, host, flight_port, rest_port, metrics_port, node_id, ready_file, log_level):
    """Run a node (embedded storage unless Redis/MinIO are configured)."""
    from clients.errors import MinioDBError

    from . import logs, malloc, ports
    from .config import ConfigError, load_settings
    from .node import Node

    overrides = {"server.data_dir": data_dir, "server.host": host, "server.grpc_port": flight_port,
                 "server.rest_port": rest_port, "server.metrics_port": metrics_port, "server.node_id": node_id,
                 "server.log_level": log_level}
    try:
        settings = load_settings(config_file, overrides)
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)
    logs.configure(settings.server.log_level)
    malloc.configure()  # this process is a server: keep ingest buffers' memory warm

    node = Node(settings, rest=rest_gateway)
    try:
        node.start()
    except MinioDBError as exc:
        click.echo(f"cannot start: {exc.message}", err=True)
        sys.exit(1)
    stopping, hurry = threading.Event(), threading.Event()

    def on_signal(signum, frame):
        if stopping.is_set() or signum == signal.SIGINT:
            hurry.set()  # Ctrl-C, or a second signal: no drain delay
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    local = ports.local_addresses(settings, node.addresses)  # what a client on this machine can paste
    if ready_file:
        tmp = Path(ready_file).with_suffix(".tmp")
        tmp.write_text(json.dumps(local))
        tmp.replace(ready_file)
    click.echo(ports.ready_message(node.node_id, settings, local), err=True)
    while not stopping.wait(0.5):
        pass
    drain(node, settings.server.drain_delay, hurry)
    sys.exit(0)


def drain(node, delay: float, hurry: threading.Event) -> None:
    """SIGTERM, in order: not ready (503 on /api/v1/health/ready) -> ``server.drain_delay`` seconds
    so load balancers notice -> in-flight calls finish (``server.drain_timeout``) -> flush -> exit."""
    import logging
    import os

    node.drain()
    if delay > 0 and not hurry.is_set():
        click.echo(f"draining: not ready; leaving the load balancer's pool for {delay:g}s", err=True)
        hurry.wait(delay)
    click.echo("shutting down: finishing in-flight calls, flushing buffers", err=True)
    node.stop()
    if node.flight_stuck:  # gRPC threads of calls that outlived drain_timeout would hold the exit
        logging.shutdown()
        sys.stderr.flush()
        os._exit(0)


def rest_gateway(node):
    """The REST gateway (uvicorn in a thread) on the node's REST port: a Flight client of the
    node's own Flight port, behind the node's API keys and HTTP metrics. Returns the started
    listener (``.port``, ``.stop()``); the node starts it after Flight and stops it with it."""
    from gateway.app import GatewayConfig, create_app
    from gateway.server import GatewayServer

    from . import auth
    from .metrics import HttpMetrics

    s = node.settings.server
    host = s.host
    if s.tls_enabled:
        flight_uri, roots = node.addresses["flight"], Path(s.tls_cert_file).read_bytes()
    else:
        local = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
        flight_uri, roots = f"grpc://{'[' + local + ']' if ':' in local else local}:{node.flight.port}", None
    config = GatewayConfig(flight_uri=flight_uri, max_body_bytes=s.max_request_bytes, tls_root_certs=roots,
                           service_token=s.api_keys[0] if s.auth_enabled and s.api_keys else None)
    level = "info" if s.log_level.upper() == "DEBUG" else "warning"
    app = create_app(config)
    wrapped = app if node.api_keys is None else auth.RestAuth(app, node.api_keys, on_failure=node.auth_failed)
    wrapped = HttpMetrics(wrapped, node.metrics, [getattr(r, "path", "") for r in app.routes])
    return GatewayServer(config, host, s.rest_port, log_level=level,
                         ssl_certfile=s.tls_cert_file if s.tls_enabled else None,
                         ssl_keyfile=s.tls_key_file if s.tls_enabled else None, app=wrapped).start()

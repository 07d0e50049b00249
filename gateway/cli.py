"""``miniodb gateway``: the REST gateway standalone, in front of a node's Flight port.

``clients/cli.py`` finds this command through the ``miniodb.commands`` entry point group and
loads it only when it runs; ``--uri`` of the ``miniodb`` group is the default node.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click


@click.command()
@click.option("--flight", "flight_uri", default=None, help="Flight URI of the node [default: --uri]")
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", type=int, default=8081, show_default=True, help="REST port (0: any free port)")
@click.option("--max-body-bytes", type=int, default=64 * 1024 * 1024, show_default=True,
              help="larger request bodies are refused with 413")
@click.option("--service-token", envvar="MINIODB_GATEWAY_SERVICE_TOKEN", default=None,
              help="API key the gateway uses for GET /api/v1/health when the node requires auth")
@click.option("--tls-root-certs", type=click.Path(exists=True, dir_okay=False), default=None,
              help="PEM roots to verify a grpc+tls node")
@click.option("--tls-cert-file", type=click.Path(exists=True, dir_okay=False), default=None, help="serve HTTPS")
@click.option("--tls-key-file", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--ready-file", type=click.Path(dir_okay=False), default=None,
              help="write {\"rest\": URL} as JSON here once listening")
@click.option("--log-level", default="info", show_default=True)
@click.pass_context
def gateway(ctx, flight_uri, host, port, max_body_bytes, service_token, tls_root_certs, tls_cert_file,
            tls_key_file, ready_file, log_level):
    """Run the REST gateway (/api/v1 JSON over HTTP) in front of a node's Flight port."""
    from .app import GatewayConfig
    from .server import serve as serve_gateway

    if max_body_bytes <= 0:
        raise click.UsageError("--max-body-bytes must be positive")
    if bool(tls_cert_file) != bool(tls_key_file):
        raise click.UsageError("give both --tls-cert-file and --tls-key-file")
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = GatewayConfig(flight_uri=flight_uri or (ctx.obj or {}).get("uri") or "grpc://localhost:8080",
                           max_body_bytes=max_body_bytes,
                           tls_root_certs=Path(tls_root_certs).read_bytes() if tls_root_certs else None,
                           service_token=service_token)
    scheme = "https" if tls_cert_file else "http"
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host

    def ready(bound: int) -> None:
        click.echo(f"MinIODB REST gateway on {scheme}://{shown}:{bound}/api/v1 -> {config.flight_uri}", err=True)
        if ready_file:
            tmp = Path(ready_file).with_suffix(".tmp")
            tmp.write_text(json.dumps({"rest": f"{scheme}://{shown}:{bound}"}))
            tmp.replace(ready_file)

    serve_gateway(config, host, port, ssl_certfile=tls_cert_file, ssl_keyfile=tls_key_file,
                  log_level=log_level, ready=ready)

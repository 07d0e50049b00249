"""MinIODB REST gateway: ``/api/v1`` JSON over HTTP, translated into Flight calls to a node.

It reaches nodes only through :mod:`clients`. Start it inside ``miniodb serve`` (the REST
port, pointed at the node's own Flight port) or standalone with
``miniodb gateway --flight grpc://host:port --port 8081``.
"""

from .app import GatewayConfig, create_app

__all__ = ["GatewayConfig", "create_app"]

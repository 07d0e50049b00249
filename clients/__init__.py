"""MinIODB clients: ``from clients import Client`` (loaded on first use, so the CLI and the
gateway import this package without pyarrow.flight)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .flight import Client

__all__ = ["Client"]


def __getattr__(name: str) -> Any:
    if name == "Client":
        from .flight import Client

        return Client
    raise AttributeError(f"module 'clients' has no attribute {name!r}")

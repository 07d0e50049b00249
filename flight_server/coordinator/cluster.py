"""Internal calls between nodes: the cluster credential, signed tickets and membership.

Every internal message (a pin, a release, a fragment ticket) is signed with HMAC-SHA256
under the cluster secret and carries its expiry: a node refuses an unsigned, forged or
expired one with UNAUTHENTICATED, so a client can never use a fragment ticket to get
around authentication (with auth on, the call itself also needs a credential: the peer
client sends a bearer token of the shared API keys). The secret is
``coordinator.cluster_secret``; when unset it is derived from the first API key (auth on)
or from the deployment's shared metadata and object store addresses (auth off: nothing to
protect then, but a forged ticket is still refused). The secret never reaches a log.

Placement: rendezvous (highest random weight) hashing of an object key over the node ids;
a file moves only when its node leaves or a node that outranks the holder joins.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Sequence
from typing import Any

import orjson

from clients.errors import Unauthenticated

FRAGMENT_PREFIX = b"miniodb-fragment:"
ACTION_PIN = "cluster.pin"
ACTION_RELEASE = "cluster.release"
ACTION_CANCEL = "cluster.cancel"
ACTIONS = frozenset({ACTION_PIN, ACTION_RELEASE, ACTION_CANCEL})
_MAC_LEN = 64  # hex sha256


def derive_secret(configured: str, api_keys: Sequence[str], shared: str) -> bytes:
    if configured:
        material = "configured:" + configured
    elif api_keys:
        material = "key:" + api_keys[0]
    else:
        material = "deployment:" + shared
    return hashlib.sha256(b"miniodb-cluster-v1\x00" + material.encode()).digest()


class Signer:
    def __init__(self, secret: bytes, clock=time.time):
        self._secret = secret
        self._clock = clock

    def __repr__(self) -> str:  # never show the secret
        return "Signer(<secret>)"

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).hexdigest().encode()

    def sign(self, body: dict[str, Any], ttl: float) -> bytes:
        payload = orjson.dumps({**body, "exp": self._clock() + ttl})
        return FRAGMENT_PREFIX + self._mac(payload) + b":" + payload

    def verify(self, raw: bytes) -> dict[str, Any]:
        if not raw.startswith(FRAGMENT_PREFIX):
            raise Unauthenticated("not a signed cluster message")
        rest = raw[len(FRAGMENT_PREFIX):]
        mac, payload = rest[:_MAC_LEN], rest[_MAC_LEN + 1:]
        if len(mac) != _MAC_LEN or rest[_MAC_LEN:_MAC_LEN + 1] != b":" or not hmac.compare_digest(
                mac, self._mac(payload)):
            raise Unauthenticated("invalid cluster credential")
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise Unauthenticated("invalid cluster credential") from exc
        if not isinstance(body, dict) or float(body.get("exp", 0)) < self._clock():
            raise Unauthenticated("cluster message expired")
        return body


def _weight(node_id: str, key: str) -> bytes:
    return hashlib.blake2b(f"{node_id}\x00{key}".encode(), digest_size=8).digest()


def place(key: str, node_ids: Sequence[str]) -> str:
    """The node that holds ``key``: the highest random weight (rendezvous hashing)."""
    return max(node_ids, key=lambda n: _weight(n, key))


# -- the client's call, for cancellation ------------------------------------------------------
# The Flight handler that runs a query registers its call's ``is_cancelled`` for its thread;
# the coordinator checks it while it waits for peers, and cancels their fragments when the
# client gave up (a cancelled or timed-out GetFlightInfo). Keyed by thread id: pyarrow enters
# Python from its gRPC threads with a fresh thread state each time (see auth.py).
_cancel_checks: dict[int, Any] = {}


class cancellable:  # noqa: N801 - used as a context manager
    def __init__(self, context: Any):
        self.check = getattr(context, "is_cancelled", None)

    def __enter__(self) -> None:
        if self.check is not None:
            _cancel_checks[threading.get_ident()] = self.check

    def __exit__(self, *exc: Any) -> None:
        _cancel_checks.pop(threading.get_ident(), None)


def cancel_check() -> Any:
    """The current call's ``is_cancelled`` (or None outside a Flight call)."""
    return _cancel_checks.get(threading.get_ident())

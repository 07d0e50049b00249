"""Authentication: API keys, signed bearer tokens, the Flight middleware and the REST check.

Credentials (``server.auth_enabled`` + ``server.api_keys``):

* Flight, Basic: ``authorization: Basic base64(user:key)`` in the Handshake (what ADBC and
  ``pyarrow.flight``'s ``authenticate_basic_token`` do) or on any call. The user name is not
  checked; the password is the API key. The node answers ``authorization: Bearer <token>``
  and accepts that token on every later call.
* Flight, Bearer: ``authorization: Bearer <token or API key>`` on any call.
* REST: ``Authorization: Bearer <key or token>`` (Basic works too). ``/api/v1/health`` (and
  its ``/live`` and ``/ready``) and the metrics port stay open.

Tokens are stateless and signed, so every node behind the load balancer accepts a token any
other node issued, with no shared state: ``mdb1.<kid>.<expiry>.<nonce>.<mac>`` where ``mac``
is HMAC-SHA256 under a secret derived from the API key (PBKDF2, 100k rounds, so a token
seen on the wire is no shortcut to guessing a weak key) and ``kid`` names the key without
revealing it. A token dies with its expiry or when its key is removed from the
configuration. Keys are compared in constant time (fixed-length digests, every configured
key checked). Keys and tokens never reach logs, metrics or error messages; a failure says
only that credentials are missing or invalid.

The same middleware opens a *call scope*: the authenticated principal (``key-<kid>``, never
the key) and the call's request headers. Handlers and the node read the scope with
:func:`current_scope` (the scope lives in the handler's thread for the length of the call;
pyarrow runs the middleware and the handler in the same thread). With auth off only the
calls that read headers or log in (DoPut, DoAction, Handshake) get one: a middleware costs
every call three Python upcalls on its gRPC thread. Query statistics go out as
``x-miniodb-*`` headers from the handlers (see :mod:`flight_server.querylog`).

pyarrow answers a Handshake with UNIMPLEMENTED unless an auth handler is installed, and an
auth handler alone checks an ``auth-token-bin`` header ADBC never sends. So
:class:`HandshakeAcceptor` only lets the Handshake through; the middleware does the work.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import orjson
import pyarrow.flight as flight

from clients import errors

from . import threadstate

log = logging.getLogger("miniodb.auth")

TOKEN_PREFIX = "mdb1"
TOKEN_TTL = 24 * 3600.0  # ADBC keeps the token of a connection and never re-authenticates
KDF_ROUNDS = 100_000
MISSING = "authentication required: send an API key (Basic password or Bearer)"
INVALID = "invalid credentials"
ANONYMOUS_TOKEN = "anonymous"  # handed out by a node without auth to clients that log in anyway


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class _Key:
    kid: str
    digest: bytes
    secret: bytes


class ApiKeys:
    """The configured API keys: constant-time checks, token issue and validation."""

    def __init__(self, keys: Iterable[str], token_ttl: float = TOKEN_TTL, clock: Callable[[], float] = time.time,
                 rounds: int = KDF_ROUNDS):
        self.token_ttl = token_ttl
        self._clock = clock
        items = []
        for key in dict.fromkeys(k for k in keys if k):
            secret = hashlib.pbkdf2_hmac("sha256", key.encode(), b"miniodb-token-v1", rounds)
            kid = hmac.new(secret, b"key-id", hashlib.sha256).hexdigest()[:12]
            items.append(_Key(kid, _digest(key), secret))
        self._keys = tuple(items)
        self._by_kid = {k.kid: k for k in items}

    @staticmethod
    def principal(kid: str) -> str:
        return f"key-{kid[:8]}"

    def check_key(self, candidate: str) -> str | None:
        """The principal of the API key ``candidate``, or None. Constant time in the key."""
        probe = _digest(candidate)
        found = None
        for k in self._keys:  # no early exit: every key is compared
            if hmac.compare_digest(probe, k.digest):
                found = k
        return self.principal(found.kid) if found is not None else None

    def issue(self, principal: str) -> str:
        """A signed bearer token for the key behind ``principal``."""
        key = next((k for k in self._keys if self.principal(k.kid) == principal), None)
        if key is None:
            raise errors.Unauthenticated(INVALID)
        expiry = int(self._clock() + self.token_ttl)
        body = f"{TOKEN_PREFIX}.{key.kid}.{expiry:x}.{_b64(os.urandom(9))}"
        return f"{body}.{_b64(hmac.new(key.secret, body.encode(), hashlib.sha256).digest())}"

    def check_token(self, token: str) -> str | None:
        """The principal of a valid, unexpired token, or None."""
        parts = token.split(".")
        if len(parts) != 5 or parts[0] != TOKEN_PREFIX:
            return None
        key = self._by_kid.get(parts[1])
        if key is None:
            return None
        body = token[: token.rfind(".")]
        mac = _b64(hmac.new(key.secret, body.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(mac.encode(), parts[4].encode()):
            return None
        try:
            expiry = int(parts[2], 16)
        except ValueError:
            return None
        return self.principal(key.kid) if expiry > self._clock() else None

    def check_bearer(self, value: str) -> str | None:
        if value.startswith(TOKEN_PREFIX + "."):
            principal = self.check_token(value)
            if principal is not None:
                return principal
        return self.check_key(value)


@dataclass
class Credentials:
    scheme: str  # "basic", "bearer" or "" (none)
    secret: str = ""


def parse_authorization(value: str | None) -> Credentials:
    """``Basic``/``Bearer`` credentials of an Authorization header (the key is the Basic password)."""
    if not value:
        return Credentials("")
    scheme, _, rest = value.strip().partition(" ")
    rest = rest.strip()
    if scheme.lower() == "bearer" and rest:
        return Credentials("bearer", rest)
    if scheme.lower() == "basic" and rest:
        try:
            text = base64.b64decode(rest + "=" * (-len(rest) % 4), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return Credentials("invalid")
        _, sep, password = text.partition(":")
        return Credentials("basic", password) if sep else Credentials("invalid")
    return Credentials("invalid")


def authenticate(keys: ApiKeys, header: str | None) -> tuple[str, bool]:
    """(principal, issue a token?) for an Authorization header; raises Unauthenticated."""
    creds = parse_authorization(header)
    if creds.scheme == "":
        raise errors.Unauthenticated(MISSING)
    principal = None
    if creds.scheme == "bearer":
        principal = keys.check_bearer(creds.secret)
    elif creds.scheme == "basic":
        principal = keys.check_key(creds.secret)
    if principal is None:
        raise errors.Unauthenticated(INVALID)
    return principal, creds.scheme == "basic"


# -- the call scope --------------------------------------------------------------------------

# The scope of the call running in each OS thread. Not a threading.local: pyarrow enters
# Python from its gRPC threads with a fresh thread state each time, which drops locals.
_scopes: dict[int, CallScope] = {}


@dataclass
class CallScope:
    """One Flight call: who makes it."""

    principal: str = ""
    method: str = ""
    token: str | None = None  # bearer token to hand back (Basic credentials)
    sent: set[str] = field(default_factory=set)


def current_scope() -> CallScope | None:
    return _scopes.get(threading.get_ident())


def current_principal() -> str:
    scope = current_scope()
    return scope.principal if scope is not None else ""


class CallMiddleware(flight.ServerMiddleware):
    def __init__(self, scope: CallScope, headers: dict | None = None):
        self.scope = scope
        self.headers = headers or {}  # the call's request headers (read by flightsql.server.header)

    def sending_headers(self):
        """The bearer token, once (pyarrow may ask twice for a unary call). Statement
        statistics go out from the handlers themselves (``querylog.add_headers``)."""
        s = self.scope
        if s.token and "authorization" not in s.sent:
            s.sent.add("authorization")
            return {"authorization": f"Bearer {s.token}"}
        return {}

    def call_completed(self, exception):
        ident = threading.get_ident()
        if _scopes.get(ident) is self.scope:
            _scopes.pop(ident, None)


# calls whose handlers read request headers (batch ids, session cookies); a Handshake also
# needs the middleware, to answer a login with a token
HEADER_METHODS = frozenset({flight.FlightMethod.DO_PUT, flight.FlightMethod.DO_ACTION})
_NEED_HEADERS = HEADER_METHODS | {flight.FlightMethod.HANDSHAKE}


class CallMiddlewareFactory(flight.ServerMiddlewareFactory):
    """Opens the call scope; with ``keys`` it also authenticates every call."""

    def __init__(self, keys: ApiKeys | None = None, on_failure: Callable[[], None] = lambda: None):
        self.keys = keys
        self.on_failure = on_failure

    def start_call(self, info, headers):
        threadstate.pin()  # the gRPC thread keeps its Python state for its next calls
        if self.keys is None and info.method not in _NEED_HEADERS:
            # auth off: a query or fetch needs no call state, and no middleware spares the
            # call three Python upcalls (start, headers, completion) on its gRPC thread
            return None
        scope = CallScope(method=info.method.name if hasattr(info.method, "name") else str(info.method))
        if self.keys is not None:
            values = headers.get("authorization") or headers.get("Authorization") or []
            try:
                scope.principal, issue = authenticate(self.keys, values[0] if values else None)
                if issue:
                    scope.token = self.keys.issue(scope.principal)
            except errors.MinioDBError as err:
                self.on_failure()
                log.debug("rejected a %s call: %s", scope.method, err.message)
                raise flight.FlightUnauthenticatedError(errors.tag(err)) from None
        elif info.method == flight.FlightMethod.HANDSHAKE:
            # auth off: a client that logs in anyway (ADBC with username/password) insists on a
            # bearer token in the answer; any value does, it is never checked
            scope.token = ANONYMOUS_TOKEN
        _scopes[threading.get_ident()] = scope
        return CallMiddleware(scope, headers)


class HandshakeAcceptor(flight.ServerAuthHandler):
    """Lets the Handshake RPC through (the middleware checked its credentials already)."""

    def authenticate(self, outgoing, incoming):
        return None

    def is_valid(self, token):
        threadstate.pin()  # the first upcall of every call: later ones only take the GIL
        return ""


# -- REST --------------------------------------------------------------------------------------

class RestAuth:
    """ASGI wrapper: every REST route but the open ones needs a valid key or token."""

    def __init__(self, app, keys: ApiKeys, open_paths: Sequence[str] = (
            "/api/v1/health", "/api/v1/health/live", "/api/v1/health/ready", "/api/v1/docs",
            "/api/v1/openapi.json", "/"),
                 on_failure: Callable[[], None] = lambda: None,
                 open_prefixes: tuple[str, ...] = ("/console/",)):  # the web console's static assets
        self.app = app
        self.keys = keys
        self.open_paths = frozenset(p.rstrip("/") for p in open_paths)
        self.open_prefixes = open_prefixes
        self.on_failure = on_failure

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope.get("type") != "http" or path.rstrip("/") in self.open_paths or path.startswith(self.open_prefixes):
            await self.app(scope, receive, send)
            return
        header = None
        for k, v in scope.get("headers") or ():
            if k.lower() == b"authorization":
                header = v.decode("latin-1")
                break
        try:
            authenticate(self.keys, header)
        except errors.MinioDBError as err:
            self.on_failure()
            body = orjson.dumps(err.to_json())
            await send({"type": "http.response.start", "status": err.http_status,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()),
                                    (b"www-authenticate", b'Bearer realm="miniodb"')]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)

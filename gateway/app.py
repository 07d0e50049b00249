"""The REST gateway: an ASGI (Starlette) app that turns ``/api/v1`` JSON calls into Flight calls.

The gateway is a Flight client of one node (``clients.flight.Client``); it imports nothing
from ``flight_server``. Blocking Flight calls and the JSON -> Arrow conversion run in worker
threads, so the event loop keeps answering (health checks included) while batches are
written.

Errors: every failure is one JSON body ``{ok: false, error, code, status}`` with the status
of its :mod:`clients.errors` class (400 bad input, 401 credentials, 404 unknown, 409 exists,
413 body too large, 503 node unavailable). Anything unexpected is logged here and answered
as a generic 500 without details: never a stack trace to a client.

Credentials: an ``Authorization`` header (``Bearer <key>`` or ``Basic ...``) is forwarded
to the node on every Flight call made for that request; ``GET /health`` is unauthenticated
(it uses the gateway's own service credential, if it has one).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import pyarrow as pa
from anyio import to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from clients import errors, protocol
from clients.errors import InvalidRequest, MinioDBError, NotFound, PayloadTooLarge
from clients.flight import Client, stats_http_headers, to_params

from . import convert, output
from .console import console_routes
from .data import data_routes
from .health import ServiceRoutes
from .output import JSONResponse

log = logging.getLogger("miniodb.gateway")
PREFIX = "/api/v1"
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")  # the node's rule (flight_server.catalog)
MAX_BACKUP_DAYS = 36500
PRINTABLE = re.compile(r"^[\x20-\x7e]+$")  # what a gRPC metadata value may hold
DEFAULT_TABLE_SCHEMA = [{"name": "id", "type": "string"}, {"name": "timestamp", "type": "timestamp"}]


def gateway_version() -> str:
    try:
        return version("miniodb")
    except PackageNotFoundError:
        return "0.0.0"


@dataclass(frozen=True)
class GatewayConfig:
    flight_uri: str = "grpc://localhost:8080"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    tls_root_certs: bytes | None = None
    service_token: str | None = None  # credential for /health when the node requires auth
    health_timeout: float = 5.0
    call_timeout: float | None = None


def error_response(err: MinioDBError) -> JSONResponse:
    return JSONResponse(err.to_json(), status_code=err.http_status)


class Backend:
    """The Flight clients of the gateway: one per distinct ``Authorization`` header (LRU)."""

    def __init__(self, config: GatewayConfig, max_clients: int = 64):
        self.config = config
        self._max = max_clients
        self._clients: OrderedDict[str, Client] = OrderedDict()
        self._lock = threading.Lock()
        self.anonymous = self._make()
        self.service = self._make(token=config.service_token, timeout=config.health_timeout)

    def _make(self, timeout: float | None = None, **creds) -> Client:
        return Client(self.config.flight_uri, tls_root_certs=self.config.tls_root_certs,
                      timeout=timeout if timeout is not None else self.config.call_timeout, **creds)

    def for_request(self, request: Request) -> Client:
        auth = request.headers.get("authorization")
        if not auth:
            return self.anonymous
        with self._lock:
            client = self._clients.get(auth)
            if client is not None:
                self._clients.move_to_end(auth)
                return client
        client = self._make(**_credentials(auth))
        with self._lock:
            self._clients[auth] = client
            while len(self._clients) > self._max:
                _, old = self._clients.popitem(last=False)
                old.close()
        return client

    def close(self) -> None:
        with self._lock:
            clients = [*self._clients.values(), self.anonymous, self.service]
            self._clients.clear()
        for c in clients:
            try:
                c.close()
            except Exception:  # noqa: BLE001 - closing at shutdown
                pass


def _credentials(header: str) -> dict:
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        if not PRINTABLE.match(value):
            raise errors.Unauthenticated("malformed Bearer credentials")
        return {"token": value}
    if scheme.lower() == "basic" and value:
        try:
            text = base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise errors.Unauthenticated("malformed Basic credentials") from None
        user, sep, password = text.partition(":")
        if not sep:
            raise errors.Unauthenticated("malformed Basic credentials (expected user:password)")
        return {"username": user, "password": password}
    raise errors.Unauthenticated("unsupported Authorization header; use 'Bearer <api key>' or Basic")


# -- request helpers ---------------------------------------------------------------------

async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InvalidRequest("malformed Content-Length header") from None
        if size > limit:
            raise PayloadTooLarge(f"request body of {size} bytes is over the limit of {limit} bytes")
    parts = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


async def json_object(request: Request, limit: int, *, optional: bool = False) -> dict:
    raw = await read_body(request, limit)
    if optional and not raw.strip():
        return {}
    body = convert.parse_json(raw)
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return body


def _check_keys(body: dict, allowed: set[str], what: str) -> None:
    extra = set(body) - allowed
    if extra:
        raise InvalidRequest(f"unknown key(s) in {what}: {', '.join(sorted(map(repr, extra)))}; "
                             f"allowed: {', '.join(sorted(allowed))}")


def _opt(body: dict, key: str, kind: type | tuple, what: str, default: Any = None) -> Any:
    value = body.get(key, default)
    if value is None:
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise InvalidRequest(f"{key!r} must be {what}")
    return value


def _query_bool(request: Request, key: str, default: bool = False) -> bool:
    raw = request.query_params.get(key)
    if raw is None:
        return default
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on", ""):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise InvalidRequest(f"query parameter {key!r} must be true or false, not {raw!r}")


def _query_number(request: Request, key: str, default: float | None, minimum: float = 0,
                  maximum: float = float("inf")) -> float | None:
    raw = request.query_params.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidRequest(f"query parameter {key!r} must be a number, not {raw!r}") from None
    if not math.isfinite(value) or not minimum <= value <= maximum:
        raise InvalidRequest(f"query parameter {key!r} must be a number from {minimum} to {maximum}")
    return int(value) if value.is_integer() else value


Handler = Callable[[Request], Awaitable[Response]]


def api(fn: Handler) -> Handler:
    """Every route: errors become the one JSON error body; never a stack trace."""

    @functools.wraps(fn)
    async def wrapper(request: Request) -> Response:
        try:
            return await fn(request)
        except MinioDBError as err:
            if err.http_status >= 500:
                log.warning("%s %s -> %s: %s", request.method, request.url.path, err.http_status, err.message)
            return error_response(err)
        except Exception:  # noqa: BLE001 - logged here, generic answer to the client
            log.exception("internal error in %s %s", request.method, request.url.path)
            return error_response(errors.Internal("internal error"))

    return wrapper


# -- the app -----------------------------------------------------------------------------

class Gateway(ServiceRoutes):
    """The routes; the service ones (health, docs, status) are in :mod:`gateway.health`."""

    def __init__(self, config: GatewayConfig):
        self.config = config
        self.backend = Backend(config)
        self.version = gateway_version()

    async def call(self, fn: Callable, *args, **kwargs) -> Any:
        return await to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    async def action(self, request: Request, name: str, body: dict | None = None) -> Any:
        client = self.backend.for_request(request)
        return await self.call(client.action, name, body or {})

    # -- data ------------------------------------------------------------------------------
    async def write(self, request: Request) -> Response:
        raw = await read_body(request, self.config.max_body_bytes)
        client = self.backend.for_request(request)
        batch_id = request.headers.get("idempotency-key") or request.headers.get(protocol.BATCH_ID_HEADER)
        if batch_id and (len(batch_id) > 256 or not PRINTABLE.match(batch_id)):
            raise InvalidRequest("Idempotency-Key must be 1 to 256 printable ASCII characters")
        table, rows = await self.call(_write, client, raw, batch_id)
        return JSONResponse({"ok": True, "table": table, "rows": rows})

    async def query(self, request: Request) -> Response:
        started = time.perf_counter()
        fmt = output.pick_format(request.query_params.get("format"), request.headers.get("accept"))
        body = await json_object(request, self.config.max_body_bytes)
        _check_keys(body, {"sql", "params", "limit"}, "a query body")
        sql = body.get("sql")
        if not isinstance(sql, str) or not sql.strip():
            raise InvalidRequest("'sql' is required and must be a non-empty string")
        params = body.get("params")
        if params is not None and not isinstance(params, list | dict):
            raise InvalidRequest("'params' must be an array (positional) or an object (named)")
        limit = _opt(body, "limit", int, "a non-negative integer")
        if limit is not None and limit < 0:
            raise InvalidRequest("'limit' must be a non-negative integer")
        client = self.backend.for_request(request)
        reader, stats = await self.call(_open_with_stats, client, sql, params)
        chunks = output.stream(fmt, reader.schema, _results(reader, limit), started)
        first = await self.call(next, chunks, None)  # errors before the first byte keep their status
        headers = stats_http_headers(stats)  # X-MinIODB-* query statistics from the node
        if fmt in ("csv", "parquet", "arrow"):
            ext = {"csv": "csv", "parquet": "parquet", "arrow": "arrows"}[fmt]
            headers["content-disposition"] = f'attachment; filename="result.{ext}"'
        return StreamingResponse(_prepend(first, chunks), media_type=output.FORMATS[fmt], headers=headers)

    # -- tables ----------------------------------------------------------------------------
    async def create_table(self, request: Request) -> Response:
        body = await json_object(request, self.config.max_body_bytes)
        _check_keys(body, {"name", "schema", "config", "if_not_exists"}, "a create-table body")
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("'name' is required and must be a non-empty string")
        schema = body.get("schema")
        if schema is None:
            schema = DEFAULT_TABLE_SCHEMA
        elif not isinstance(schema, list | str):
            raise InvalidRequest("'schema' must be a list of {name, type, nullable?} or a base64 Arrow IPC schema")
        config = _opt(body, "config", dict, "an object", {})
        if "properties" in config:
            props = config["properties"]
            if props is not None and (not isinstance(props, dict)
                                      or not all(isinstance(v, str | int | float | bool) for v in props.values())):
                raise InvalidRequest("'config.properties' must be an object of string values")
            if props:
                config = {**config, "properties": {k: _prop_text(v) for k, v in props.items()}}
        if_not_exists = _opt(body, "if_not_exists", bool, "true or false", False)
        info = await self.action(request, protocol.ACTION_CREATE_TABLE, {
            "name": name, "schema": schema, "config": config, "if_not_exists": if_not_exists})
        return JSONResponse({"ok": True, **_table_json(info)}, status_code=201)

    async def list_tables(self, request: Request) -> Response:
        pattern = request.query_params.get("pattern") or None
        res = await self.action(request, protocol.ACTION_LIST_TABLES, {"pattern": pattern} if pattern else {})
        return JSONResponse({"ok": True, "tables": res.get("tables", [])})

    async def get_table(self, request: Request) -> Response:
        name = request.path_params["name"]
        if not TABLE_NAME.match(name):
            raise InvalidRequest(f"invalid table name {name!r}: must match {TABLE_NAME.pattern}")
        info = await self.action(request, protocol.ACTION_DESCRIBE_TABLE, {"name": name})
        return JSONResponse({"ok": True, **_table_json(info)})

    async def drop_table(self, request: Request) -> Response:
        name = request.path_params["name"]
        if_exists = _query_bool(request, "if_exists")
        res = await self.action(request, protocol.ACTION_DROP_TABLE, {"name": name, "if_exists": if_exists})
        return JSONResponse({"ok": True, "table": name, "dropped": bool(res.get("dropped"))})

    # -- operations ------------------------------------------------------------------------
    async def flush(self, request: Request) -> Response:
        body = await json_object(request, self.config.max_body_bytes, optional=True)
        _check_keys(body, {"table"}, "a flush body")
        table = _opt(body, "table", str, "a table name")
        res = await self.action(request, protocol.ACTION_FLUSH, {"table": table} if table else {})
        return JSONResponse({"ok": True, **res})

    async def backup(self, request: Request) -> Response:
        body = await json_object(request, self.config.max_body_bytes, optional=True)
        _check_keys(body, set(), "a backup body")
        res = await self.action(request, protocol.ACTION_BACKUP_METADATA, {})
        return JSONResponse({"ok": True, **(res or {})}, status_code=201)

    async def list_backups(self, request: Request) -> Response:
        days = _query_number(request, "days", 30, maximum=MAX_BACKUP_DAYS)
        res = await self.action(request, protocol.ACTION_LIST_BACKUPS, {"days": days})
        return JSONResponse({"ok": True, **(res if isinstance(res, dict) else {"backups": res or []})})

    async def restore(self, request: Request) -> Response:
        body = await json_object(request, self.config.max_body_bytes)
        _check_keys(body, {"from_latest", "backup_file", "dry_run"}, "a restore body")
        from_latest = _opt(body, "from_latest", bool, "true or false", False)
        backup_file = _opt(body, "backup_file", str, "a backup file name", "")
        dry_run = _opt(body, "dry_run", bool, "true or false", False)
        if not from_latest and not backup_file:
            raise InvalidRequest("give 'backup_file' or set 'from_latest': true")
        if from_latest and backup_file:
            raise InvalidRequest("give either 'backup_file' or 'from_latest', not both")
        args = {"from_latest": from_latest, "dry_run": dry_run}
        if backup_file:
            args["backup_file"] = backup_file
        res = await self.action(request, protocol.ACTION_RESTORE_METADATA, args)
        return JSONResponse({"ok": True, **(res or {})})

    async def metadata_status(self, request: Request) -> Response:
        client = self.backend.for_request(request)
        health = await self.call(client.health)
        st = await self.call(client.status)
        out: dict[str, Any] = {"ok": True, "backend": st.get("metadata"),
                               "healthy": (health.get("checks") or {}).get("metadata") == "ok",
                               "check": (health.get("checks") or {}).get("metadata"),
                               "node_id": health.get("node_id")}
        try:
            backups = await self.call(client.action, protocol.ACTION_LIST_BACKUPS, {"days": 30})
            items = backups.get("backups", []) if isinstance(backups, dict) else (backups or [])
            out["backups"] = {"count": len(items), "latest": items[0] if items else None}
            if isinstance(backups, dict):
                out["backups"].update({k: v for k, v in backups.items() if k != "backups"})
        except (NotFound, errors.Unimplemented) as err:
            out["backups"] = {"available": False, "reason": err.message}
        return JSONResponse(out)


def _prop_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _table_json(info: dict) -> dict:
    info = dict(info or {})
    info.pop("schema_ipc", None)
    return info


def _write(client: Client, raw: bytes, batch_id: str | None) -> tuple[str, int]:
    """Parse, convert and ingest one write body (runs in a worker thread)."""
    table, data = convert.write_body_to_arrow(raw)
    rows = client.ingest(table, data, mode="create_append", batch_id=batch_id or None)
    return table, rows


def _open_with_stats(client: Client, sql: str, params: Any):
    """The reader and the node's statistics headers of its execution (same thread)."""
    reader = _open_reader(client, sql, params)
    last = getattr(client, "last_stats", None)
    return reader, (last() if callable(last) else {})


def _open_reader(client: Client, sql: str, params: Any):
    if params is None:
        return client.query_reader(sql)
    try:
        table = to_params(params)
    except MinioDBError:
        raise
    except (pa.ArrowException, TypeError, ValueError, OverflowError, IndexError) as exc:
        raise InvalidRequest(f"'params': cannot bind these values: {str(exc).splitlines()[0]}") from None
    return client.query_reader(sql, params=table)


def _results(reader, limit: int | None):
    try:
        yield from output.limited(None, output.reader_batches(reader), limit)
    finally:
        reader.close()  # at the limit, or when the client went away: stop reading the stream


def _prepend(first: bytes | None, rest):
    if first is not None:
        yield first
    yield from rest


async def _http_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    if status == 404:
        err: MinioDBError = NotFound(f"no route {request.method} {request.url.path}")
    elif status == 405:
        err = InvalidRequest(f"method {request.method} is not allowed on {request.url.path}")
        err.http_status = 405
        err.code = "method_not_allowed"
    elif status < 500:
        err = InvalidRequest(str(getattr(exc, "detail", "bad request")))
        err.http_status = status
    else:
        log.error("unhandled error on %s %s: %r", request.method, request.url.path, exc)
        err = errors.Internal("internal error")
    headers = getattr(exc, "headers", None)
    resp = error_response(err)
    if headers:
        resp.headers.update(headers)
    return resp


def create_app(config: GatewayConfig | None = None, **kwargs) -> Starlette:
    """The gateway ASGI app for ``config`` (or ``GatewayConfig(**kwargs)``)."""
    gw = Gateway(config or GatewayConfig(**kwargs))
    p = PREFIX
    routes = [
        Route(f"{p}/health", api(gw.health), methods=["GET"]),
        Route(f"{p}/health/live", api(gw.live), methods=["GET"]),
        Route(f"{p}/health/ready", api(gw.ready), methods=["GET"]),
        Route(f"{p}/openapi.json", api(gw.openapi), methods=["GET"]),
        Route(f"{p}/docs", api(gw.docs), methods=["GET"]),
        *console_routes(gw, api, p),  # GET / and /console/* (gateway/console.py)
        Route(f"{p}/status", api(gw.status), methods=["GET"]),
        Route(f"{p}/data", api(gw.write), methods=["POST"]),
        *data_routes(gw, api, json_object, p),  # PUT/DELETE: one row by id (gateway/data.py)
        Route(f"{p}/query", api(gw.query), methods=["POST"]),
        Route(f"{p}/tables", api(gw.create_table), methods=["POST"]),
        Route(f"{p}/tables", api(gw.list_tables), methods=["GET"]),
        Route(f"{p}/tables/{{name}}", api(gw.get_table), methods=["GET"]),
        Route(f"{p}/tables/{{name}}", api(gw.drop_table), methods=["DELETE"]),
        Route(f"{p}/flush", api(gw.flush), methods=["POST"]),
        Route(f"{p}/metadata/backup", api(gw.backup), methods=["POST"]),
        Route(f"{p}/metadata/backups", api(gw.list_backups), methods=["GET"]),
        Route(f"{p}/metadata/restore", api(gw.restore), methods=["POST"]),
        Route(f"{p}/metadata/status", api(gw.metadata_status), methods=["GET"]),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app):
        try:
            yield
        finally:
            gw.backend.close()

    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error}, lifespan=lifespan)
    app.state.gateway = gw
    return app

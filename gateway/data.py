"""``PUT /api/v1/data`` and ``DELETE /api/v1/data``: update or delete one row by its id, the way
the original MinIODB API did, as SQL DML sent to the node (Flight SQL prepared statement with
bound parameters, through ``clients/``).

* ``PUT {"table": t, "id": v, <column>: <value>, ...}`` runs
  ``UPDATE "t" SET "column" = ?, ... WHERE "id" = ?``;
* ``DELETE {"table": t, "id": v}`` runs ``DELETE FROM "t" WHERE "id" = ?``.

The id column is ``id`` unless the body names another in ``id_column``. The answer is
``{"ok": true, "table": t, "rows": n}`` with the exact number of rows changed (0 when no row
has that id: a repeated DELETE is harmless). An unknown table answers 404, an unknown column
or a value that does not fit its column 400 (nothing is written).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pyarrow as pa
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from clients.errors import InvalidRequest

from .output import JSONResponse

RESERVED = ("table", "id", "id_column")


def _ident(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name or "\x00" in name:
        raise InvalidRequest(f"{what} must be a non-empty string")
    return '"' + name.replace('"', '""') + '"'


def _row(body: dict, *, fields: bool) -> tuple[str, str, Any, dict[str, Any]]:
    table = _ident(body.get("table"), "'table'")
    if "id" not in body or body["id"] is None:
        raise InvalidRequest("'id' is required (the value of the row's id column)")
    id_column = body.get("id_column", "id")
    _ident(id_column, "'id_column'")
    values = {k: v for k, v in body.items() if k not in RESERVED}
    if fields and not values:
        raise InvalidRequest("give at least one column to update besides 'table' and 'id'")
    if not fields and values:
        raise InvalidRequest(f"unexpected key(s) {', '.join(map(repr, sorted(values)))}: a delete body is "
                             "{table, id[, id_column]}")
    if fields and id_column in values:
        raise InvalidRequest(f"the id column {id_column!r} cannot be updated here; use SQL (/api/v1/query)")
    return table, id_column, body["id"], values


def _params(values: list[Any]) -> pa.Table:
    try:
        return pa.table({f"${i + 1}": pa.array([v]) for i, v in enumerate(values)})
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        raise InvalidRequest(f"cannot bind these values: {str(exc).splitlines()[0]}") from None


def update_sql(body: dict) -> tuple[str, str, pa.Table]:
    """(table, SQL, parameters) of a PUT body."""
    table, id_column, id_value, values = _row(body, fields=True)
    sets = ", ".join(f"{_ident(k, 'a column name')} = ?" for k in values)
    sql = f"UPDATE {table} SET {sets} WHERE {_ident(id_column, 'id_column')} = ?"
    return body["table"], sql, _params([*values.values(), id_value])


def delete_sql(body: dict) -> tuple[str, str, pa.Table]:
    """(table, SQL, parameters) of a DELETE body."""
    table, id_column, id_value, _ = _row(body, fields=False)
    return body["table"], f"DELETE FROM {table} WHERE {_ident(id_column, 'id_column')} = ?", _params([id_value])


def data_routes(gateway, wrap, read_json: Callable[[Request, int], Awaitable[dict]],
                prefix: str = "/api/v1") -> list[Route]:
    """The PUT and DELETE routes of ``/data``; ``wrap`` is the gateway's error wrapper."""

    def handler(build: Callable[[dict], tuple[str, str, pa.Table]]):
        async def run(request: Request) -> Response:
            body = await read_json(request, gateway.config.max_body_bytes)
            table, sql, params = build(body)
            client = gateway.backend.for_request(request)
            rows = await gateway.call(client.execute, sql, params)
            return JSONResponse({"ok": True, "table": table, "rows": rows})

        return run

    return [Route(prefix + "/data", wrap(handler(update_sql)), methods=["PUT"]),
            Route(prefix + "/data", wrap(handler(delete_sql)), methods=["DELETE"])]

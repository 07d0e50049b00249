"""The OpenAPI 3.0 description of the gateway (served at ``/api/v1/openapi.json``; rendered as
the docs page ``/api/v1/docs`` by gateway/docs.py).

Written by hand as data, so it says exactly what the routes accept (the hot write path
parses JSON straight into Arrow and has no request models to generate a schema from).
"""

from __future__ import annotations

from typing import Any

TABLE_NAME = {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_]{0,63}$", "example": "events",
              "description": "A letter, then letters, digits or '_' (64 characters at most). Case-insensitive."}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    return {str(c): {"$ref": f"#/components/responses/E{c}"} for c in codes}


_ERROR_TEXT = {
    400: "Bad input: malformed JSON, invalid names, type conflicts, bad SQL.",
    401: "Missing or wrong credentials.",
    404: "Unknown table, backup or route.",
    409: "Already exists, or a conflict (a DELETE/UPDATE that kept losing to other rewrites of its files).",
    403: "The key is valid but may not do this.",
    405: "The path exists, the method does not (e.g. GET /api/v1/query).",
    413: "Request body over the configured limit.",
    499: "The query was cancelled.",
    500: "Unexpected server error: logged by the server, no details in the answer.",
    501: "Not supported (e.g. DELETE ... USING, UPDATE ... FROM, RETURNING).",
    503: "The node or one of its dependencies is unavailable.",
    507: "Resource exhausted: the node's WAL disk is full (writes), or the query passed query.memory_limit.",
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["ok", "error", "code", "status"],
        "properties": {
            "ok": {"type": "boolean", "enum": [False]},
            "error": {"type": "string", "description": "What went wrong, safe to show"},
            "code": {"type": "string", "example": "invalid_request",
                     "description": "invalid_request, payload_too_large, not_found, already_exists, conflict, "
                                    "unauthenticated, permission_denied, unavailable, internal ..."},
            "status": {"type": "integer", "description": "The HTTP status, repeated"},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "version", "node_id", "checks"],
        "properties": {
            "status": {"type": "string", "example": "ok", "description": "ok, degraded or down"},
            "version": {"type": "string"},
            "node_id": {"type": "string", "nullable": True},
            "checks": {
                "type": "object",
                "required": ["flight", "metadata", "storage"],
                "properties": {k: {"type": "string", "example": "ok"} for k in ("flight", "metadata", "storage")},
            },
        },
    },
    "Ready": {
        "type": "object",
        "required": ["status", "version", "node_id", "draining", "wal_replayed", "checks"],
        "properties": {
            "status": {"type": "string", "example": "ready", "description": "ready, not_ready or draining"},
            "version": {"type": "string"},
            "node_id": {"type": "string", "nullable": True},
            "draining": {"type": "boolean", "description": "the node got SIGTERM and is leaving the pool"},
            "wal_replayed": {"type": "boolean"},
            "checks": {
                "type": "object",
                "required": ["flight", "metadata", "storage"],
                "properties": {k: {"type": "string", "example": "ok"} for k in ("flight", "metadata", "storage")},
            },
        },
    },
    "Payload": {
        "type": "object",
        "additionalProperties": True,
        "description": "One column per key. JSON booleans -> bool, integers -> int64, other numbers -> float64, "
                       "strings -> string, objects/arrays -> JSON text. Keys named 'id' or 'timestamp' "
                       "are stored as 'payload_id' / 'payload_timestamp'.",
        "example": {"user": "ada", "amount": 12.5, "tags": ["a", "b"]},
    },
    "Timestamp": {
        "description": "RFC 3339 string (no zone: UTC) or epoch milliseconds; stored as UTC microseconds. "
                       "Defaults to the time of the request.",
        "oneOf": [{"type": "string", "format": "date-time"}, {"type": "integer"}],
    },
    "Record": {
        "type": "object",
        "required": ["payload"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string", "description": "Record id; generated when missing"},
            "timestamp": _ref("Timestamp"),
            "payload": _ref("Payload"),
        },
    },
    "SingleWrite": {
        "type": "object",
        "required": ["table", "payload"],
        "additionalProperties": False,
        "properties": {
            "table": TABLE_NAME,
            "id": {"type": "string"},
            "timestamp": _ref("Timestamp"),
            "payload": _ref("Payload"),
        },
    },
    "BatchWrite": {
        "type": "object",
        "required": ["table", "records"],
        "additionalProperties": False,
        "properties": {
            "table": TABLE_NAME,
            "records": {"type": "array", "minItems": 1, "items": _ref("Record")},
        },
    },
    "WriteResult": {
        "type": "object",
        "required": ["ok", "table", "rows"],
        "properties": {
            "ok": {"type": "boolean"},
            "table": {"type": "string"},
            "rows": {"type": "integer", "description": "Rows acknowledged: durable on the node (WAL fsync)"},
        },
    },
    "RowUpdate": {
        "type": "object",
        "required": ["table", "id"],
        "additionalProperties": {"description": "A column to set, and its new value"},
        "properties": {
            "table": TABLE_NAME,
            "id": {"description": "The value of the row's id column", "example": 42},
            "id_column": {"type": "string", "default": "id", "description": "The id column (default `id`)"},
        },
        "example": {"table": "events", "id": 42, "status": "done", "amount": 12.5},
    },
    "RowDelete": {
        "type": "object",
        "required": ["table", "id"],
        "additionalProperties": False,
        "properties": {
            "table": TABLE_NAME,
            "id": {"description": "The value of the row's id column", "example": 42},
            "id_column": {"type": "string", "default": "id", "description": "The id column (default `id`)"},
        },
    },
    "DmlResult": {
        "type": "object",
        "required": ["ok", "table", "rows"],
        "properties": {
            "ok": {"type": "boolean"},
            "table": {"type": "string"},
            "rows": {"type": "integer", "description": "Rows updated or deleted, exactly (0: no row has that id)"},
        },
    },
    "QueryRequest": {
        "type": "object",
        "required": ["sql"],
        "additionalProperties": False,
        "properties": {
            "sql": {"type": "string", "minLength": 1, "example": "SELECT count(*) FROM events"},
            "params": {"description": "Statement parameters: an array (positional) or an object (named)",
                       "oneOf": [{"type": "array", "items": {}}, {"type": "object", "additionalProperties": True}]},
            "limit": {"type": "integer", "minimum": 0, "description": "At most this many rows are returned"},
        },
    },
    "QueryResult": {
        "type": "object",
        "required": ["columns", "rows", "row_count"],
        "properties": {
            "ok": {"type": "boolean"},
            "columns": {"type": "array", "items": {
                "type": "object", "properties": {"name": {"type": "string"}, "type": {"type": "string"}}}},
            "rows": {"type": "array", "items": {"type": "array", "items": {}}},
            "row_count": {"type": "integer"},
            "duration_ms": {"type": "number"},
            "error": _ref("Error"),
        },
    },
    "Column": {
        "type": "object",
        "required": ["name", "type"],
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "type": {"type": "string", "example": "int64",
                     "description": "bool, int8..int64, uint8..uint64, float32, float64, string, binary, date32, "
                                    "timestamp (UTC microseconds), timestamp[ms] ..."},
            "nullable": {"type": "boolean", "default": True},
        },
    },
    "TableConfig": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "buffer_size": {"type": "integer", "minimum": 1, "description": "Rows buffered before a flush"},
            "flush_interval_seconds": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
            "retention_days": {"type": "integer", "minimum": 0},
            "properties": {"type": "object", "additionalProperties": {"type": "string"},
                           "description": "e.g. {\"auto_evolve\": \"false\"} refuses new columns"},
        },
    },
    "CreateTable": {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {
            "name": TABLE_NAME,
            "schema": {"description": "Columns, or a base64 Arrow IPC schema. Default: id string, timestamp.",
                       "oneOf": [{"type": "array", "minItems": 1, "items": _ref("Column")},
                                 {"type": "string", "format": "byte"}]},
            "config": _ref("TableConfig"),
            "if_not_exists": {"type": "boolean", "default": False},
        },
    },
    "Table": {
        "type": "object",
        "properties": {
            "ok": {"type": "boolean"},
            "name": {"type": "string"},
            "table_id": {"type": "string"},
            "schema": {"type": "array", "items": _ref("Column")},
            "schema_version": {"type": "integer"},
            "time_column": {"type": "string", "nullable": True},
            "config": {"type": "object", "additionalProperties": True},
            "stats": {"type": "object", "additionalProperties": True},
            "created_at": {},
        },
    },
    "TableList": {
        "type": "object",
        "properties": {
            "ok": {"type": "boolean"},
            "tables": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}, "columns": {"type": "integer"},
                "time_column": {"type": "string", "nullable": True}}}},
        },
    },
    "Dropped": {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}, "table": {"type": "string"}, "dropped": {"type": "boolean"}},
    },
    "FlushRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"table": TABLE_NAME},
    },
    "RestoreRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "from_latest": {"type": "boolean", "default": False},
            "backup_file": {"type": "string", "example": "backup_20240118.json"},
            "dry_run": {"type": "boolean", "default": False},
        },
    },
    "Object": {"type": "object", "additionalProperties": True},
}

_QUERY_FORMATS = {
    "application/json": {"schema": _ref("QueryResult")},
    "application/vnd.apache.arrow.stream": {"schema": {"type": "string", "format": "binary"}},
    "text/csv": {"schema": {"type": "string"}},
    "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
}


def _body(schema: str, required: bool = True) -> dict:
    return {"required": required, "content": {"application/json": {"schema": _ref(schema)}}}


PATHS: dict[str, Any] = {
    "/health": {"get": {
        "tags": ["service"], "operationId": "health", "summary": "Node health (unauthenticated)",
        "security": [],
        "responses": {"200": _json(_ref("Health"), "Healthy"),
                      "503": _json(_ref("Health"), "A dependency (Flight, metadata, storage) is down")},
    }},
    "/health/live": {"get": {
        "tags": ["service"], "operationId": "health_live", "security": [],
        "summary": "Liveness: this process serves (never depends on Redis or storage; unauthenticated)",
        "responses": {"200": _json(_ref("Object"), "The process serves: {status: ok, version}")},
    }},
    "/health/ready": {"get": {
        "tags": ["service"], "operationId": "health_ready", "security": [],
        "summary": "Readiness: dependencies reachable, WAL replayed, not draining (unauthenticated)",
        "responses": {"200": _json(_ref("Ready"), "Ready for traffic"),
                      "503": _json(_ref("Ready"), "Not ready: a dependency is down, or the node drains (SIGTERM)")},
    }},
    "/status": {"get": {
        "tags": ["operations"], "operationId": "status", "summary": "The node, its buffers and the live nodes",
        "responses": {"200": _json(_ref("Object")), **_errors(401, 503)},
    }},
    "/data": {"post": {
        "tags": ["data"], "operationId": "write", "summary": "Write one record or a batch",
        "description": "All or nothing: a rejected batch writes nothing. The table is created on first write "
                       "unless the server forbids it (tables.auto_create=false). New payload keys add nullable "
                       "columns (unless the table has properties.auto_evolve=false). Acknowledged rows are "
                       "durable. An `Idempotency-Key` header makes a retried batch apply once.",
        "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string"}}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "oneOf": [_ref("SingleWrite"), _ref("BatchWrite")]}}}},
        "responses": {"200": _json(_ref("WriteResult")), **_errors(400, 401, 404, 413, 503, 507)},
    }, "put": {
        "tags": ["data"], "operationId": "updateRow", "summary": "Update the fields of the row(s) with an id",
        "description": "`UPDATE t SET <fields> WHERE <id_column> = id` as SQL DML: buffered and committed rows, "
                       "on every node. Matching Parquet files are rewritten copy-on-write and committed "
                       "atomically; a value that does not fit its column writes nothing (400).",
        "requestBody": _body("RowUpdate"),
        "responses": {"200": _json(_ref("DmlResult")), **_errors(400, 401, 403, 404, 409, 413, 503)},
    }, "delete": {
        "tags": ["data"], "operationId": "deleteRow", "summary": "Delete the row(s) with an id",
        "description": "`DELETE FROM t WHERE <id_column> = id` as SQL DML (see PUT). Deleting an id that is "
                       "not there answers rows: 0.",
        "requestBody": _body("RowDelete"),
        "responses": {"200": _json(_ref("DmlResult")), **_errors(400, 401, 403, 404, 409, 413, 503)},
    }},
    "/query": {"post": {
        "tags": ["data"], "operationId": "query", "summary": "Run SQL; JSON, Arrow IPC, CSV or Parquet",
        "description": "The format comes from `?format=` or else the Accept header. Results stream.",
        "parameters": [{"name": "format", "in": "query", "required": False,
                        "schema": {"type": "string", "enum": ["json", "arrow", "csv", "parquet"]}}],
        "requestBody": _body("QueryRequest"),
        "responses": {"200": {"description": "The result", "content": _QUERY_FORMATS},
                      **_errors(400, 401, 403, 404, 413, 499, 500, 501, 503, 507)},
    }},
    "/tables": {
        "post": {
            "tags": ["tables"], "operationId": "createTable", "summary": "Create a table",
            "requestBody": _body("CreateTable"),
            "responses": {"201": _json(_ref("Table"), "Created (or already there with if_not_exists)"),
                          **_errors(400, 401, 409, 413, 503)},
        },
        "get": {
            "tags": ["tables"], "operationId": "listTables", "summary": "List tables",
            "parameters": [{"name": "pattern", "in": "query", "required": False,
                            "schema": {"type": "string", "example": "t_*"}, "description": "glob"}],
            "responses": {"200": _json(_ref("TableList")), **_errors(400, 401, 503)},
        },
    },
    "/tables/{name}": {
        "parameters": [{"name": "name", "in": "path", "required": True, "schema": TABLE_NAME}],
        "get": {
            "tags": ["tables"], "operationId": "describeTable", "summary": "Schema, config and stats",
            "responses": {"200": _json(_ref("Table")), **_errors(400, 401, 404, 503)},
        },
        "delete": {
            "tags": ["tables"], "operationId": "dropTable", "summary": "Drop a table and its data",
            "parameters": [{"name": "if_exists", "in": "query", "required": False, "schema": {"type": "boolean"}}],
            "responses": {"200": _json(_ref("Dropped")), **_errors(400, 401, 404, 503)},
        },
    },
    "/flush": {"post": {
        "tags": ["operations"], "operationId": "flush", "summary": "Flush buffered rows to Parquet now",
        "requestBody": _body("FlushRequest", required=False),
        "responses": {"200": _json(_ref("Object")), **_errors(400, 401, 404, 503)},
    }},
    "/cluster": {"get": {
        "tags": ["service"], "operationId": "cluster",
        "summary": "Every node: health, role, buffers, WAL bytes, last heartbeat, version (peers asked over Flight)",
        "responses": {"200": _json(_ref("Object")), **_errors(401, 503)},
    }},
    "/queries/{query_id}/cancel": {"post": {
        "tags": ["operations"], "operationId": "cancelQuery",
        "summary": "Cancel a running query (its query_id in system.queries, X-MinIODB-Query-Id)",
        "parameters": [{"name": "query_id", "in": "path", "required": True,
                        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}}],
        "responses": {"200": _json(_ref("Object")), **_errors(400, 401, 404, 503)},
    }},
    "/metadata/backup": {"post": {
        "tags": ["metadata"], "operationId": "backupMetadata", "summary": "Write a metadata backup now",
        "responses": {"201": _json(_ref("Object")), **_errors(400, 401, 503)},
    }},
    "/metadata/backups": {"get": {
        "tags": ["metadata"], "operationId": "listBackups", "summary": "Metadata backups of the last days",
        "parameters": [{"name": "days", "in": "query", "required": False,
                        "schema": {"type": "number", "minimum": 0, "maximum": 36500, "default": 30}}],
        "responses": {"200": _json(_ref("Object")), **_errors(400, 401, 503)},
    }},
    "/metadata/restore": {"post": {
        "tags": ["metadata"], "operationId": "restoreMetadata", "summary": "Restore metadata from a backup",
        "requestBody": _body("RestoreRequest"),
        "responses": {"200": _json(_ref("Object")), **_errors(400, 401, 404, 409, 503)},
    }},
    "/metadata/status": {"get": {
        "tags": ["metadata"], "operationId": "metadataStatus", "summary": "Metadata backend and backups",
        "responses": {"200": _json(_ref("Object")), **_errors(401, 503)},
    }},
}


def openapi_document(version: str = "0.0.0") -> dict:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "MinIODB REST gateway",
            "version": version,
            "description": "JSON over HTTP, translated into Arrow Flight calls to a MinIODB node. Every error "
                           "is `{ok: false, error, code, status}`.",
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{}, {"bearer": []}, {"basic": []}],
        "tags": [{"name": n} for n in ("service", "data", "tables", "operations", "metadata")],
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "responses": {f"E{c}": _json(_ref("Error"), text) for c, text in _ERROR_TEXT.items()},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An API key"},
                "basic": {"type": "http", "scheme": "basic", "description": "Any user name, the API key as password"},
            },
        },
    }

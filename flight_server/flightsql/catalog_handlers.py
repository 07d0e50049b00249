"""Flight SQL handlers for what the server and its catalog are: SqlInfo, XDBC type info,
catalogs, schemas, tables, table types, keys (each a GetFlightInfo and a DoGet, answered from
data: :mod:`.sql_info`, :mod:`.metadata_commands`), and the session options.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from clients import protocol

from . import metadata_commands as md
from .api import NodeAPI, opt
from .middleware import header
from .sessions import COOKIE, SessionStore
from .sql_info import SQL_INFO_SCHEMA, sql_info_table
from .xdbc_types import XDBC_TYPE_INFO_SCHEMA, xdbc_type_info_table

#: GetSchema answers that need no execution.
FIXED_SCHEMAS: dict[str, Any] = {
    "CommandGetSqlInfo": SQL_INFO_SCHEMA,
    "CommandGetXdbcTypeInfo": XDBC_TYPE_INFO_SCHEMA,
    "CommandGetCatalogs": md.CATALOGS_SCHEMA,
    "CommandGetDbSchemas": md.DB_SCHEMAS_SCHEMA,
    "CommandGetTables": lambda cmd: md.TABLES_WITH_SCHEMA_SCHEMA if cmd.include_schema else md.TABLES_SCHEMA,
    "CommandGetTableTypes": md.TABLE_TYPES_SCHEMA,
    "CommandGetPrimaryKeys": md.PRIMARY_KEYS_SCHEMA,
    "CommandGetExportedKeys": md.KEYS_SCHEMA,
    "CommandGetImportedKeys": md.KEYS_SCHEMA,
    "CommandGetCrossReference": md.KEYS_SCHEMA,
}


def _xdbc(cmd: Any) -> pa.Table:
    return xdbc_type_info_table(cmd.data_type if cmd.HasField("data_type") else None)


class CatalogHandlers:
    """Mixin of :class:`~.server.MinioFlightServer`: metadata commands and session options."""

    node: NodeAPI
    sessions: SessionStore

    # -- sessions ------------------------------------------------------------------------
    def _session_keys(self, context) -> tuple[str, str]:
        return self.sessions.keys(header(context, "cookie"), context.peer())

    def _schema_names(self) -> list[str]:
        return md.schema_names(self.node.sql_tables())

    def do_action_set_session_options(self, context, req):
        result, new_id = self.sessions.set(self._session_keys(context), req)
        if new_id:
            context.add_header("set-cookie", f"{COOKIE}={new_id}")
        return [flight.Result(pa.py_buffer(result.SerializeToString()))]

    def do_action_get_session_options(self, context, req):
        return [flight.Result(pa.py_buffer(self.sessions.get(self._session_keys(context)).SerializeToString()))]

    def do_action_close_session(self, context, req):
        return [flight.Result(pa.py_buffer(self.sessions.close(self._session_keys(context)).SerializeToString()))]

    # -- metadata ------------------------------------------------------------------------
    def _metadata_info(self, cmd, descriptor, table: pa.Table) -> flight.FlightInfo:
        endpoint = flight.FlightEndpoint(protocol.pack(cmd), [])
        return flight.FlightInfo(table.schema, descriptor, [endpoint], table.num_rows, -1)

    def get_flight_info_sql_info(self, context, cmd, descriptor):
        return self._metadata_info(cmd, descriptor, sql_info_table(list(cmd.info)))

    def do_get_sql_info(self, context, cmd):
        return flight.RecordBatchStream(sql_info_table(list(cmd.info)))

    def get_flight_info_xdbc_type_info(self, context, cmd, descriptor):
        return self._metadata_info(cmd, descriptor, _xdbc(cmd))

    def do_get_xdbc_type_info(self, context, cmd):
        return flight.RecordBatchStream(_xdbc(cmd))

    def get_flight_info_catalogs(self, context, cmd, descriptor):
        return self._metadata_info(cmd, descriptor, md.catalogs_table())

    def do_get_catalogs(self, context, cmd):
        return flight.RecordBatchStream(md.catalogs_table())

    def _db_schemas(self, cmd) -> pa.Table:
        return md.db_schemas_table(self.node.sql_tables(), opt(cmd, "catalog"), opt(cmd, "db_schema_filter_pattern"))

    def get_flight_info_db_schemas(self, context, cmd, descriptor):
        return self._metadata_info(cmd, descriptor, self._db_schemas(cmd))

    def do_get_db_schemas(self, context, cmd):
        return flight.RecordBatchStream(self._db_schemas(cmd))

    def _tables(self, cmd) -> pa.Table:
        return md.tables_table(self.node.sql_tables(), opt(cmd, "catalog"), opt(cmd, "db_schema_filter_pattern"),
                               opt(cmd, "table_name_filter_pattern"), list(cmd.table_types), cmd.include_schema)

    def get_flight_info_tables(self, context, cmd, descriptor):
        return self._metadata_info(cmd, descriptor, self._tables(cmd))

    def do_get_tables(self, context, cmd):
        return flight.RecordBatchStream(self._tables(cmd))

    def get_flight_info_table_types(self, context, cmd, descriptor):
        return self._metadata_info(cmd, descriptor, md.table_types_table(self.node.sql_tables()))

    def do_get_table_types(self, context, cmd):
        return flight.RecordBatchStream(md.table_types_table(self.node.sql_tables()))

    def get_flight_info_primary_keys(self, context, cmd, descriptor):
        return self._metadata_info(cmd, descriptor, md.primary_keys_table())

    def do_get_primary_keys(self, context, cmd):
        return flight.RecordBatchStream(md.primary_keys_table())

    def get_flight_info_exported_keys(self, context, cmd, descriptor):
        return self._metadata_info(cmd, descriptor, md.keys_table())

    def do_get_exported_keys(self, context, cmd):
        return flight.RecordBatchStream(md.keys_table())

    def get_flight_info_imported_keys(self, context, cmd, descriptor):
        return self._metadata_info(cmd, descriptor, md.keys_table())

    def do_get_imported_keys(self, context, cmd):
        return flight.RecordBatchStream(md.keys_table())

    def get_flight_info_cross_reference(self, context, cmd, descriptor):
        return self._metadata_info(cmd, descriptor, md.keys_table())

    def do_get_cross_reference(self, context, cmd):
        return flight.RecordBatchStream(md.keys_table())

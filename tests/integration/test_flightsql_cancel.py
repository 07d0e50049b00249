"""CancelFlightInfo stops a long query; the node stays healthy."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from clients import errors, protocol
from clients.flight import translate
from clients.protocol import flight_pb2
from tests.fixtures.node import NodeProcess

# ~10^12 rows: streams for hours unless stopped.
ENDLESS = "SELECT a.range AS x, b.range AS y FROM range(1000000) a, range(1000000) b"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    node = NodeProcess(tmp_path_factory.mktemp("cancel")).start()
    yield node
    node.terminate()


def _healthy(client) -> None:
    assert client.health()["status"] == "ok"
    assert client.query("SELECT 41 + 1 AS v").column("v").to_pylist() == [42]


def test_cancel_a_streaming_query(server):
    client = server.client()
    info = client.flight_info(ENDLESS)
    stream = client._client.do_get(info.endpoints[0].ticket)
    assert stream.read_chunk().data.num_rows > 0
    assert client.cancel(info) == flight_pb2.CANCEL_STATUS_CANCELLED
    with pytest.raises(flight.FlightCancelledError) as exc:  # gRPC CANCELLED
        while True:
            stream.read_chunk()
    assert isinstance(translate(exc.value), errors.Cancelled)
    assert client.cancel(info) == flight_pb2.CANCEL_STATUS_CANCELLED  # idempotent
    _healthy(client)


def test_cancel_before_doget(server):
    client = server.client()
    info = client.flight_info(ENDLESS)
    assert client.cancel(info) == flight_pb2.CANCEL_STATUS_CANCELLED
    with pytest.raises(errors.Cancelled):
        client._call(lambda: client._client.do_get(info.endpoints[0].ticket).read_all())
    _healthy(client)


def test_cancel_finished_and_unknown_queries(server):
    client = server.client()
    info = client.flight_info("SELECT 1 AS one")
    assert client._client.do_get(info.endpoints[0].ticket).read_all().num_rows == 1
    assert client.cancel(info) == flight_pb2.CANCEL_STATUS_NOT_CANCELLABLE
    ddl = client.flight_info("CREATE TABLE IF NOT EXISTS cancel_ddl (a INT)")
    assert client.cancel(ddl) == flight_pb2.CANCEL_STATUS_NOT_CANCELLABLE
    foreign = flight.FlightInfo(pa.schema([]), flight.FlightDescriptor.for_command(b""),
                                [flight.FlightEndpoint(protocol.pack(protocol.sql_pb2.TicketStatementQuery(
                                    statement_handle=b'{"h": "0000", "q": "SELECT 1"}')), [])], -1, -1)
    with pytest.raises(errors.NotFound):
        client.cancel(foreign)
    _healthy(client)


def test_adbc_cursor_after_cancelled_stream(server):
    """A client that gives up on a stream (closes it) leaves the node healthy."""
    with server.adbc() as conn, conn.cursor() as cur:
        cur.execute(ENDLESS)
        reader = cur.fetch_record_batch()
        assert reader.read_next_batch().num_rows > 0
        reader.close()
        cur.execute("SELECT 7 AS v")
        assert cur.fetchone() == (7,)
    _healthy(server.client())

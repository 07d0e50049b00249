"""The data-dir lock and the address helpers, in process (the real processes: integration/test_startup_guards.py)."""

from __future__ import annotations

import os
import socket

import pytest

from clients.errors import Conflict
from flight_server import ports
from flight_server.config import load_settings
from flight_server.datadir import DataDirLock


def test_one_holder_at_a_time_named_in_the_refusal(tmp_path):
    first = DataDirLock(tmp_path).acquire(flight_port=8080)
    first.update(addresses={"flight": "grpc://localhost:8080"})
    with pytest.raises(Conflict) as err:
        DataDirLock(tmp_path).acquire()
    assert f"pid {os.getpid()}" in err.value.message and "grpc://localhost:8080" in err.value.message
    first.release()
    second = DataDirLock(tmp_path).acquire()
    assert second.held
    second.release()


def test_addresses_printed_and_advertised():
    s = load_settings(None, {"server.host": "0.0.0.0"}, environ={})
    adv = {"flight": f"grpc://{socket.gethostname()}:8080", "rest": f"http://{socket.gethostname()}:8081"}
    assert ports.local_addresses(s, adv) == {"flight": "grpc://localhost:8080", "rest": "http://localhost:8081"}
    assert "bound to all interfaces" in ports.ready_message("n1", s, adv)
    s = load_settings(None, {"server.host": "10.1.2.3", "server.advertise_host": "db.example"}, environ={})
    assert ports.local_addresses(s, {"flight": "grpc://db.example:8080"}) == {"flight": "grpc://10.1.2.3:8080"}
    assert "advertised to peers as db.example" in ports.ready_message("n1", s, {})


def test_a_port_in_use_is_found():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert ports.port_in_use("127.0.0.1", port)
        s = load_settings(None, {"server.host": "127.0.0.1", "server.grpc_port": 0, "server.rest_port": port,
                                 "server.metrics_port": 0}, environ={})
        with pytest.raises(Exception, match=f"rest port {port} is already in use on 127.0.0.1"):
            ports.check_free(s)
    assert not ports.port_in_use("127.0.0.1", 0)

"""What `miniodb serve` says when it cannot or should not start, and what it prints when it can:
the data-dir lock, a taken port, the ready message, misspelled MINIODB_* variables."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow as pa

REPO = Path(__file__).resolve().parents[2]


def _serve(data_dir: Path, *args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """A `serve` expected to exit by itself (it refuses to start)."""
    cmd = [sys.executable, "-m", "clients.cli", "serve", "--data-dir", str(data_dir), "--host", "127.0.0.1",
           "--flight-port", "0", "--rest-port", "0", "--metrics-port", "0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, **(env or {})})


def _count(node, table: str) -> int:
    return node.client().query(f"SELECT count(*) AS n FROM {table}").column("n")[0].as_py()


def test_second_node_on_the_same_data_dir_refuses_to_start(node_factory):
    first = node_factory(name="shared")
    first.client().ingest("t", pa.table({"k": [1, 2]}))
    lock = json.loads((first.data_dir / "LOCK").read_text())
    assert lock["pid"] == first.proc.pid

    second = _serve(first.data_dir)
    assert second.returncode != 0
    err = second.stderr.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert f"pid {first.proc.pid}" in err and first.flight in err and "in use by another node" in err
    assert _count(first, "t") == 2  # the refused node replayed and flushed nothing

    first.kill()  # kill -9: the OS drops the lock with the process
    again = node_factory(name="shared")
    assert _count(again, "t") == 2  # the WAL was replayed once, by the one node holding the dir
    assert json.loads((again.data_dir / "LOCK").read_text())["pid"] == again.proc.pid


def test_the_lock_is_released_on_a_clean_stop(node_factory):
    first = node_factory(name="d")
    assert first.terminate() == 0
    assert node_factory(name="d").client().query("SELECT 1 AS x").num_rows == 1


def test_a_taken_port_is_one_line_naming_it(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        for flag, name in (("--flight-port", "flight"), ("--rest-port", "rest"), ("--metrics-port", "metrics")):
            r = _serve(tmp_path / name, flag, str(port))
            assert r.returncode != 0
            err = r.stderr.strip()
            assert "Traceback" not in err and len(err.splitlines()) == 1, err
            assert f"{name} port {port} is already in use on 127.0.0.1" in err


def test_bound_to_all_interfaces_the_ready_message_names_localhost(node_factory):
    n = node_factory(args=["--host", "0.0.0.0"])
    assert n.flight.startswith("grpc://localhost:") and n.rest.startswith("http://localhost:")
    line = next(ln for ln in n.log().splitlines() if " ready: " in ln)
    assert n.flight in line and "bound to all interfaces" in line
    assert n.client().query("SELECT 1 AS x").num_rows == 1  # the printed address works as printed
    # peers still get the advertised (host name) address through the registry
    nodes = n.client().action("status")["nodes"]
    assert nodes and nodes[0]["flight_uri"] == n.flight.replace("localhost", socket.gethostname())


def test_misspelled_environment_variables_are_named_with_a_suggestion(node_factory):
    n = node_factory(env={"MINIODB_BUFER_SIZE": "5", "MINIODB_PORT_8080_TCP_ADDR": "10.0.0.1",
                          "MINIODB_SERVICE_HOST": "10.0.0.1", "MINIODB_URI": "grpc://x:1"})
    warnings = [ln for ln in n.log().splitlines() if "unknown environment variables" in ln]
    assert len(warnings) == 1
    assert "MINIODB_BUFER_SIZE (did you mean MINIODB_BUFFER_SIZE?)" in warnings[0]
    for fine in ("MINIODB_PORT_8080_TCP_ADDR", "MINIODB_SERVICE_HOST", "MINIODB_URI"):
        assert fine not in warnings[0]


def test_a_standalone_gateway_on_a_taken_port_is_one_line():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "clients.cli", "gateway", "--flight", "grpc://127.0.0.1:1",
                            "--host", "127.0.0.1", "--port", str(port)], capture_output=True, text=True,
                           timeout=60, cwd=REPO)
    assert r.returncode != 0
    err = r.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert f"rest port {port} is already in use on 127.0.0.1" in err

"""``miniodb gateway --flight ... --port 0`` as its own process; table and server write policies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.fixtures.services import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]


def start_gateway(tmp_path: Path, flight: str, *extra: str) -> tuple[subprocess.Popen, str]:
    ready = tmp_path / f"gw-{time.monotonic_ns()}.json"
    log = open(tmp_path / "gateway.log", "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, "-m", "clients.cli", "gateway", "--flight", flight, "--host", "127.0.0.1",
                             "--port", "0", "--ready-file", str(ready), "--log-level", "warning", *extra],
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}: {(tmp_path / 'gateway.log').read_text()}")
        if time.monotonic() > deadline:
            stop_process(proc)
            raise TimeoutError("gateway not ready")
        time.sleep(0.05)
    return proc, json.loads(ready.read_text())["rest"] + "/api/v1"


@pytest.fixture
def gateway_process(tmp_path):
    procs = []

    def start(flight: str, *extra: str) -> str:
        proc, url = start_gateway(tmp_path, flight, *extra)
        procs.append(proc)
        return url

    yield start
    for p in procs:
        stop_process(p)


def test_standalone_gateway_round_trip(node, gateway_process):
    url = gateway_process(node.flight, "--max-body-bytes", "4096")
    with httpx.Client(base_url=url, timeout=60) as http:
        h = http.get("/health")
        assert h.status_code == 200 and h.json()["checks"]["storage"] == "ok"
        r = http.post("/data", json={"table": "standalone", "records": [{"payload": {"v": i}} for i in range(3)]})
        assert r.status_code == 200 and r.json()["rows"] == 3, r.text
        res = http.post("/query", json={"sql": "SELECT sum(v) FROM standalone"}).json()
        assert res["rows"] == [[3]]
        big = http.post("/data", json={"table": "standalone", "payload": {"s": "x" * 5000}})
        assert big.status_code == 413 and big.json()["code"] == "payload_too_large"
    with node.client() as c:  # the node itself saw the rows
        assert c.query("SELECT count(*) AS n FROM standalone").column("n")[0].as_py() == 3


def test_gateway_without_a_node_answers_503(gateway_process):
    url = gateway_process(f"grpc://127.0.0.1:{free_port()}")
    with httpx.Client(base_url=url, timeout=60) as http:
        h = http.get("/health")
        assert h.status_code == 503
        body = h.json()
        assert body["status"] == "down" and body["checks"]["flight"].startswith("down")
        for r in (http.get("/tables"), http.post("/query", json={"sql": "SELECT 1"}),
                  http.post("/data", json={"table": "t", "payload": {"a": 1}}), http.get("/status")):
            assert r.status_code == 503, r.text
            assert r.json()["code"] == "unavailable" and r.json()["ok"] is False
        # bad input is still a 400, checked before the node is asked
        assert http.post("/data", content=b"{nope").status_code == 400


def test_server_forbids_table_creation(node_factory):
    n = node_factory(env={"MINIODB_TABLES_AUTO_CREATE": "false"}, name="noauto")
    with httpx.Client(base_url=n.rest + "/api/v1", timeout=60) as http:
        r = http.post("/data", json={"table": "fresh", "payload": {"a": 1}})
        assert r.status_code == 404 and r.json()["code"] == "not_found", r.text
        assert http.get("/tables").json()["tables"] == []
        assert http.post("/tables", json={"name": "fresh"}).status_code == 201
        r = http.post("/data", json={"table": "fresh", "payload": {"a": 1}})
        assert r.status_code == 200, r.text


def test_table_forbids_new_columns(node):
    with httpx.Client(base_url=node.rest + "/api/v1", timeout=60) as http:
        r = http.post("/tables", json={"name": "fixed", "schema": [
            {"name": "id", "type": "string"}, {"name": "timestamp", "type": "timestamp"}, {"name": "a", "type": "int64"}],
            "config": {"properties": {"auto_evolve": "false"}}})
        assert r.status_code == 201, r.text
        assert http.post("/data", json={"table": "fixed", "payload": {"a": 1}}).status_code == 200
        r = http.post("/data", json={"table": "fixed", "records": [{"payload": {"a": 2}}, {"payload": {"b": "new"}}]})
        assert r.status_code == 400 and "auto_evolve" in r.json()["error"], r.text
        res = http.post("/query", json={"sql": "SELECT count(*) FROM fixed"}).json()
        assert res["rows"] == [[1]]
        assert [c["name"] for c in http.get("/tables/fixed").json()["schema"]] == ["id", "timestamp", "a"]

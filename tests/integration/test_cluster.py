"""``make cluster`` / ``make cluster-down``: Redis, three nodes and HAProxy from deploy/, for real.

The targets run with this interpreter (``PY=``), the install step skipped (``-o install``: the
test must not reinstall anything), and free ports and a temporary state folder through
``CLUSTER_ARGS`` / ``CLUSTER_DIR``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from clients.flight import Client
from tests.fixtures.haproxy import same_free_ports
from tests.fixtures.helpers import rows, wait_until
from tests.fixtures.services import free_port, which_or_unavailable

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.redis]


def _make(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(["make", "-s", "-o", "install", "-o", "system-deps", f"PY={sys.executable}", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_make_cluster_and_cluster_down(tmp_path):
    which_or_unavailable("haproxy")
    which_or_unavailable("redis-server")
    state = tmp_path / "cluster"
    grpc, rest, metrics = same_free_ports(["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"], 3)
    ports = (f"--grpc-port {grpc} --rest-port {rest} --metrics-port {metrics} --stats-port {free_port()} "
             f"--redis-port {free_port()} --dns-port {free_port()}")
    try:
        up = _make("cluster", f"CLUSTER_DIR={state}", f"CLUSTER_ARGS={ports}")
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"grpc://127.0.0.1:{grpc}" in up.stdout and f"http://127.0.0.4:{rest}" in up.stdout  # the URIs
        st = json.loads((state / "state.json").read_text())
        assert {p["name"] for p in st["processes"]} == {"redis", "node1", "node2", "node3", "dns", "haproxy"}
        lb = st["uris"]["load_balancer"]
        wait_until(lambda: httpx.get(f"{lb['rest']}/api/v1/health/ready", timeout=10).status_code == 200,
                   what="ready through the load balancer")
        with Client(lb["flight"]) as c:
            assert c.ingest("clustered", rows(0, 100)) == 100  # one node buffers them
        for n in st["uris"]["nodes"]:
            with Client(n["flight"]) as c:
                c.flush()
        for n in st["uris"]["nodes"]:  # one metadata store, one object store: every node sees the rows
            with Client(n["flight"]) as c:
                assert c.query("SELECT count(*) AS n FROM clustered").to_pylist() == [{"n": 100}]
        again = _make("cluster", f"CLUSTER_DIR={state}", f"CLUSTER_ARGS={ports}")
        assert again.returncode != 0 and "already runs" in again.stderr
    finally:
        down = _make("cluster-down", f"CLUSTER_DIR={state}")
    assert down.returncode == 0 and "stopped 6 processes" in down.stdout, down.stdout + down.stderr
    assert not (state / "state.json").exists()
    for p in st["processes"]:  # every process it started is gone (init reaps them)
        wait_until(lambda p=p: not Path(f"/proc/{p['pid']}").exists(), what=f"{p['name']} gone")
    assert "shutting down" in (state / "node1" / "node.log").read_text()  # drained, not killed

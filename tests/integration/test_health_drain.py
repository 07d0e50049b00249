"""Liveness, readiness and the SIGTERM drain of a real node process; secrets from files.

* ``/api/v1/health/live`` stays 200 through a Redis outage while ``/ready`` (and the guide's
  ``/api/v1/health``) answer 503, and both are 200 again when Redis is back.
* SIGTERM: readiness turns 503 while the node still serves (``server.drain_delay``), then
  the node flushes its buffers and exits 0; the rows are in Parquet, not only in the WAL.
* ``MINIODB_SERVER_API_KEYS_FILE``: keys from a file (commas and newlines) protect a real node.
"""

from __future__ import annotations

import time

import httpx
import pytest

from clients import errors
from clients.flight import Client
from tests.fixtures.helpers import rows, wait_until


def _get(node, path: str) -> httpx.Response:
    return httpx.get(f"{node.rest}/api/v1{path}", timeout=30)


@pytest.mark.redis
def test_live_stays_200_while_redis_is_down_and_ready_follows_it(node_factory, redis_factory, tmp_path):
    r = redis_factory("outage")
    n = node_factory(env={"MINIODB_REDIS_HOST": "127.0.0.1", "MINIODB_REDIS_PORT": str(r.port),
                          "MINIODB_REDIS_SOCKET_TIMEOUT": "1",
                          "MINIODB_STORAGE_PATH": str(tmp_path / "objects")})
    live, ready = _get(n, "/health/live"), _get(n, "/health/ready")
    assert live.status_code == 200 and live.json()["status"] == "ok"
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready" and body["wal_replayed"] is True and body["draining"] is False
    assert body["checks"] == {"flight": "ok", "metadata": "ok", "storage": "ok"}

    r.stop()
    down = wait_until(lambda: (x := _get(n, "/health/ready")).status_code == 503 and x, what="ready 503")
    assert down.json()["status"] == "not_ready" and down.json()["checks"]["metadata"].startswith("down")
    assert _get(n, "/health").status_code == 503  # the guide's endpoint: unchanged meaning
    for _ in range(3):
        assert _get(n, "/health/live").status_code == 200  # an outage restarts nothing

    r.start()
    wait_until(lambda: _get(n, "/health/ready").status_code == 200, what="ready again")
    assert _get(n, "/health/live").status_code == 200 and _get(n, "/health").status_code == 200


def test_sigterm_turns_ready_503_first_then_flushes_and_exits_0(node_factory):
    n = node_factory(env={"MINIODB_SERVER_DRAIN_DELAY": "3", "MINIODB_BUFFER_SIZE": "1000000",
                          "MINIODB_BUFFER_FLUSH_INTERVAL": "3600"})
    with n.client() as c:
        assert c.ingest("drained", rows(0, 2500)) == 2500
        assert c.status()["buffers"]["drained"]["rows"] == 2500  # buffered, not flushed yet
    objects = n.data_dir / "objects"
    assert not list(objects.rglob("*.parquet"))
    assert _get(n, "/health/ready").status_code == 200

    n.proc.send_signal(15)
    seen = []
    while n.proc.poll() is None:
        try:
            r = _get(n, "/health/ready")
            seen.append((r.status_code, r.json()["status"], _get(n, "/health/live").status_code))
        except httpx.HTTPError:
            seen.append(("closed",))
        time.sleep(0.05)
    assert n.proc.wait() == 0
    draining = [s for s in seen if s[0] == 503]
    assert draining and draining[0][1] == "draining" and draining[0][2] == 200  # live while draining
    assert (200, "ready", 200) not in seen[seen.index(draining[0]):]  # never ready again once draining
    assert "draining" in n.log() and "flushing" in n.log()
    assert list(objects.rglob("*.parquet")), "the buffer was flushed to Parquet before exit"

    n.start()
    with n.client() as c:
        assert c.query("SELECT count(*) AS n, sum(id) AS s FROM drained").to_pylist() == [
            {"n": 2500, "s": sum(range(2500))}]
        assert c.status()["buffers"].get("drained", {"rows": 0})["rows"] == 0  # nothing replayed


def test_api_keys_from_a_file(node_factory, tmp_path):
    keys = tmp_path / "api_keys"
    keys.write_text("file-key-one-93ab1c,file-key-two-0d4e7f\nfile-key-three-77aa10\n")
    n = node_factory(env={"MINIODB_SERVER_AUTH_ENABLED": "true", "MINIODB_SERVER_API_KEYS_FILE": str(keys)})
    for key in ("file-key-two-0d4e7f", "file-key-three-77aa10"):
        r = httpx.get(f"{n.rest}/api/v1/tables", headers={"authorization": f"Bearer {key}"}, timeout=30)
        assert r.status_code == 200, r.text
    assert httpx.get(f"{n.rest}/api/v1/tables", timeout=30).status_code == 401
    assert httpx.get(f"{n.rest}/api/v1/tables", headers={"authorization": "Bearer file-key-one-93ab1c,"},
                     timeout=30).status_code == 401
    assert _get(n, "/health/ready").status_code == 200  # probes stay open
    with Client(n.flight, token="file-key-one-93ab1c") as c:
        assert c.ingest("secret_t", rows(0, 10)) == 10
    with Client(n.flight) as c, pytest.raises(errors.Unauthenticated):
        c.query("SELECT 1")


STREAM_SQL = "SELECT range AS x FROM range(20000000)"  # ~76 batches, read slowly below
ENDLESS_SQL = "SELECT a.range AS x, b.range AS y FROM range(1000000) a, range(1000000) b"


def _running(node, marker: str) -> bool:
    with node.client() as c:
        got = c.query("SELECT sql FROM system.queries WHERE status = 'running'").column("sql").to_pylist()
    return any(marker in s for s in got)


def _in_thread(node, sql: str, pause: float) -> dict:
    """Stream ``sql`` in a thread, ``pause`` seconds per batch; ``out["streaming"]`` is set once
    its DoGet stream delivered a batch, ``out["rows"]`` counts the rows read."""
    import threading

    out: dict = {"streaming": threading.Event()}

    def run():
        try:
            with node.client() as c:
                reader = c.query_reader(sql)  # GetFlightInfo, then DoGet opened
                out["rows"] = 0
                for batch in reader:
                    out["rows"] += batch.num_rows
                    out["streaming"].set()
                    time.sleep(pause)
        except Exception as exc:  # noqa: BLE001 - asserted by the test
            out["error"] = exc
        finally:
            out["streaming"].set()

    out["thread"] = threading.Thread(target=run, daemon=True)
    out["thread"].start()
    return out


def test_sigterm_lets_an_in_flight_query_finish(node_factory):
    n = node_factory(env={"MINIODB_SERVER_DRAIN_DELAY": "0", "MINIODB_SERVER_DRAIN_TIMEOUT": "120"})
    q = _in_thread(n, STREAM_SQL, pause=0.02)
    assert q["streaming"].wait(60)
    assert _running(n, "range(20000000)")  # still streaming: a call in flight at SIGTERM
    n.proc.send_signal(15)
    q["thread"].join(120)
    assert "error" not in q, q.get("error")
    assert q["rows"] == 20_000_000
    assert n.proc.wait(60) == 0


def test_a_query_past_drain_timeout_does_not_hold_the_exit(node_factory):
    n = node_factory(env={"MINIODB_SERVER_DRAIN_DELAY": "0", "MINIODB_SERVER_DRAIN_TIMEOUT": "1"})
    with n.client() as c:
        assert c.ingest("kept", rows(0, 10)) == 10
    q = _in_thread(n, ENDLESS_SQL, pause=0.5)
    assert q["streaming"].wait(60) and _running(n, "range(1000000) b")
    n.proc.send_signal(15)
    assert n.proc.wait(60) == 0
    assert "still running after server.drain_timeout" in n.log()
    assert list((n.data_dir / "objects").rglob("*.parquet"))  # flushed anyway

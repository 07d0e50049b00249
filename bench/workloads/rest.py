"""REST ingest: ``POST /api/v1/data`` with 1,000 records x 8 payload fields per request from 4
client threads (httpx, keep-alive), rows acknowledged per second, vs a bare ASGI endpoint that
only parses the same JSON. Also the p50 of a single-record write, sequential.

``min(--rows, --rest-rows)`` rows per repeat; the bodies are serialised before timing."""

from __future__ import annotations

import threading
import time

import httpx
import orjson

from .. import data
from ..metrics import Measurement
from ..runner import REST, Bench

TITLE = "REST ingest (1000 records x 8 fields / POST, 4 threads)"
SINGLE_TITLE = "REST single-record write"
THREADS = 4
PATH = "/api/v1/data"


class RestUnavailable(Exception):
    pass


def _post_all(base_url: str, bodies: list[bytes], per_body: list[int], headers: dict) -> tuple[float, int]:
    """POST every body from THREADS threads; returns (seconds, rows acknowledged)."""
    lock = threading.Lock()
    state = {"next": 0, "rows": 0, "error": None}

    def worker():
        with httpx.Client(base_url=base_url, headers=headers, timeout=120.0) as http:
            while True:
                with lock:
                    i = state["next"]
                    if i >= len(bodies) or state["error"]:
                        return
                    state["next"] = i + 1
                r = http.post(PATH, content=bodies[i])
                with lock:
                    if r.status_code >= 300:
                        state["error"] = f"HTTP {r.status_code}: {r.text[:300]}"
                        return
                    state["rows"] += per_body[i]

    threads = [threading.Thread(target=worker, name=f"bench-rest-{n}") for n in range(THREADS)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    if state["error"]:
        raise RestUnavailable(state["error"])
    return seconds, state["rows"]


def _single(base_url: str, bodies: list[bytes], headers: dict) -> list[float]:
    out = []
    with httpx.Client(base_url=base_url, headers=headers, timeout=60.0) as http:
        for body in bodies:
            started = time.perf_counter()
            r = http.post(PATH, content=body)
            out.append(time.perf_counter() - started)
            if r.status_code >= 300:
                raise RestUnavailable(f"HTTP {r.status_code}: {r.text[:300]}")
    return out


def _single_bodies(n: int, seed: int) -> list[bytes]:
    frame = data.rest_records(n, start=10_000_000, seed=seed)
    return [orjson.dumps({"table": REST, **rec}) for rec in orjson.loads(frame.write_json())]


def _probe(base_url: str, headers: dict) -> str | None:
    """None when the gateway takes writes; otherwise why not."""
    if not base_url:
        return "the node reports no REST address"
    body = orjson.dumps({"table": REST, "records": orjson.loads(data.rest_records(1, seed=1).write_json())})
    try:
        r = httpx.post(base_url + PATH, content=body, headers=headers, timeout=30.0)
    except httpx.HTTPError as exc:
        return f"REST gateway unreachable at {base_url}: {exc}"
    if r.status_code in (404, 405):
        return f"the node's REST port does not serve POST {PATH} yet (HTTP {r.status_code})"
    if r.status_code >= 300:
        return f"POST {PATH} answered HTTP {r.status_code}: {r.text[:200]}"
    return None


def run(b: Bench) -> None:
    names = ("rest_ingest_rows_per_s", "rest_vs_bare_json", "rest_single_write_p50_ms",
             "rest_single_write_vs_bare_json")
    headers = {"content-type": "application/json"}
    if b.opts.password is not None:
        import base64

        token = base64.b64encode(f"{b.opts.username or ''}:{b.opts.password}".encode()).decode()
        headers["authorization"] = f"Basic {token}"
    why = _probe(b.rest_url, headers)
    if why:
        b.note(f"REST workload skipped: {why}")
        b.log(f"[yellow]REST workload skipped: {why}")
        for n in names:
            b.results.unavailable(n, why)
        return
    rows = min(b.opts.rows, b.opts.rest_rows)
    bodies = data.rest_bodies(rows, REST, per_request=1000, seed=b.opts.seed)
    per_body = [min(1000, rows - i * 1000) for i in range(len(bodies))]
    nbytes = sum(len(x) for x in bodies)
    bare_url = b.service("bare_json", "bench.baselines.bare_json")["url"]
    ours = b.results.add(Measurement("rest", TITLE, "miniodb", "MinIODB REST gateway", rows, nbytes,
                                     ratios=["rest_ingest_rows_per_s", "rest_vs_bare_json"],
                                     note="MB/s counts JSON bytes"))
    bare = b.results.add(Measurement("rest", TITLE, "bare_json", "bare ASGI endpoint (parse JSON only)",
                                     rows, nbytes, note="MB/s counts JSON bytes"))
    ack = {"rows": 0}

    def run_ours():
        seconds, acked = _post_all(b.rest_url, bodies, per_body, headers)
        ours.seconds.append(seconds)
        ack["rows"] = acked

    def run_bare():
        seconds, _ = _post_all(bare_url, bodies, per_body, headers)
        bare.seconds.append(seconds)

    singles = _single_bodies(max(10, b.opts.latency_queries), b.opts.seed)
    s_ours = b.results.add(Measurement("rest_single", SINGLE_TITLE, "miniodb", "MinIODB REST gateway", 0, 0,
                                       ratios=["rest_single_write_p50_ms", "rest_single_write_vs_bare_json"]))
    s_bare = b.results.add(Measurement("rest_single", SINGLE_TITLE, "bare_json",
                                       "bare ASGI endpoint (parse JSON only)", 0, 0))
    with b.task("REST ingest", 4 * b.opts.repeat) as task:
        for i in range(b.opts.repeat):
            for fn in b.order(i, run_ours, run_bare):
                fn()
                task.advance()
            for url, m in b.order(i, (b.rest_url, s_ours), (bare_url, s_bare)):
                samples = _single(url, singles, headers)
                m.latencies.append(samples)
                m.seconds.append(sum(samples))
                task.advance()
    for m in (ours, bare, s_ours, s_bare):
        b.report(m)
    b.results.set("rest_ingest_rows_per_s", ours.rows_per_s, rows_acknowledged=ack["rows"])
    b.results.ratio("rest_vs_bare_json", ours.rows_per_s, bare.rows_per_s)
    b.results.set("rest_single_write_p50_ms", s_ours.latency(50) * 1000)
    b.results.ratio("rest_single_write_vs_bare_json", s_ours.latency(50), s_bare.latency(50))

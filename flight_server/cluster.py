"""``miniodb cluster up`` / ``down`` (``make cluster`` / ``make cluster-down``): a cluster on one
machine, without Docker, from the files in ``deploy/``.

* Redis from a copy of ``deploy/redis/redis.conf`` in ``cluster/redis/`` (Redis rewrites its
  file on CONFIG REWRITE), port, bind address and folder on the command line;
* N nodes (``miniodb serve``) on 127.0.0.2, 127.0.0.3 ... with the same ports, like hosts of
  a cluster, sharing that Redis and one object store folder (``cluster/objects``);
* HAProxy from ``deploy/haproxy/haproxy.cfg`` when ``haproxy`` is installed, its addresses set
  through the environment, finding the nodes by DNS through ``flight_server/localdns.py``.

Processes run in their own sessions (they outlive ``make``); their ids, command lines and URIs
are in ``cluster/state.json`` and their logs in ``cluster/*/``. ``down`` stops exactly those
processes (SIGTERM: nodes drain and flush) and keeps the data; ``down --purge`` removes it.
Linux: other loopback addresses than 127.0.0.1 need no setup there.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
DNS_NAME = "miniodb.cluster.local"


def _wait_port(host: str, port: int, proc: subprocess.Popen, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise click.ClickException(f"{what} exited with {proc.returncode} (see its log in the cluster folder)")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise click.ClickException(f"{what} does not listen on {host}:{port} after {timeout:.0f}s")


def _spawn(cmd: list[str], log: Path, env: dict | None = None, cwd: Path | None = None) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, cwd=cwd or REPO, start_new_session=True)


def _alive(entry: dict) -> bool:
    """The recorded process still runs (and is the same program: pids are reused)."""
    try:
        cmdline = Path(f"/proc/{entry['pid']}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return entry["match"] in cmdline


@click.group()
def cluster():
    """A local cluster without Docker: Redis, N nodes and HAProxy from the files in deploy/."""


@cluster.command()
@click.option("--nodes", "count", type=click.IntRange(1, 50), default=3, show_default=True)
@click.option("--dir", "state_dir", type=click.Path(file_okay=False), default="cluster", show_default=True,
              help="state folder: logs, data, state.json")
@click.option("--grpc-port", type=int, default=8080, show_default=True, help="Flight port (load balancer and nodes)")
@click.option("--rest-port", type=int, default=8081, show_default=True, help="REST port (load balancer and nodes)")
@click.option("--metrics-port", type=int, default=9090, show_default=True)
@click.option("--stats-port", type=int, default=8404, show_default=True, help="HAProxy stats page")
@click.option("--redis-port", type=int, default=16379, show_default=True)
@click.option("--dns-port", type=int, default=10053, show_default=True, help="the local DNS HAProxy asks")
def up(count, state_dir, grpc_port, rest_port, metrics_port, stats_port, redis_port, dns_port):
    """Start Redis, the nodes and HAProxy (if installed); print the URIs."""
    root = Path(state_dir).resolve()
    state_file = root / "state.json"
    if state_file.exists():
        running = [p for p in json.loads(state_file.read_text())["processes"] if _alive(p)]
        if running:
            raise click.ClickException(f"a cluster already runs from {root} ({len(running)} processes); "
                                       "stop it with `miniodb cluster down`")
    redis_bin = shutil.which("redis-server")
    if not redis_bin:
        raise click.ClickException("redis-server is not installed (make system-deps installs it)")
    root.mkdir(parents=True, exist_ok=True)
    procs: list[dict] = []
    state = {"processes": procs, "uris": {}}

    def record(name: str, proc: subprocess.Popen, match: str) -> None:
        procs.append({"name": name, "pid": proc.pid, "match": match})
        state_file.write_text(json.dumps(state, indent=2))

    try:
        rdir = root / "redis"
        rdir.mkdir(exist_ok=True)
        conf = rdir / "redis.conf"  # a verbatim copy: CONFIG REWRITE would change the shipped file
        conf.write_text((REPO / "deploy" / "redis" / "redis.conf").read_text())
        p = _spawn([redis_bin, str(conf), "--port", str(redis_port), "--bind", "127.0.0.1", "--dir", str(rdir),
                    "--daemonize", "no", "--logfile", str(rdir / "redis.log")], rdir / "stdout.log", cwd=rdir)
        record("redis", p, f"redis-server 127.0.0.1:{redis_port}")  # Redis retitles its process
        _wait_port("127.0.0.1", redis_port, p, "redis-server")
        hosts = [f"127.0.0.{i + 2}" for i in range(count)]
        env = {"MINIODB_REDIS_HOST": "127.0.0.1", "MINIODB_REDIS_PORT": str(redis_port),
               "MINIODB_STORAGE_PATH": str(root / "objects"), "MINIODB_SERVER_DRAIN_DELAY": "3"}
        nodes = []
        for i, host in enumerate(hosts, 1):
            ndir = root / f"node{i}"
            cmd = [sys.executable, "-m", "clients.cli", "serve", "--data-dir", str(ndir), "--host", host,
                   "--node-id", f"node{i}", "--flight-port", str(grpc_port), "--rest-port", str(rest_port),
                   "--metrics-port", str(metrics_port)]
            p = _spawn(cmd, ndir / "node.log", env)
            record(f"node{i}", p, str(ndir))
            nodes.append((host, p))
        for host, p in nodes:
            _wait_port(host, rest_port, p, f"the node on {host}")
        state["uris"]["nodes"] = [{"flight": f"grpc://{h}:{grpc_port}", "rest": f"http://{h}:{rest_port}",
                                   "metrics": f"http://{h}:{metrics_port}/metrics"} for h in hosts]
        haproxy = shutil.which("haproxy")
        if haproxy:
            p = _spawn([sys.executable, "-m", "flight_server.localdns", "--port", str(dns_port), "--name",
                        DNS_NAME, *hosts], root / "dns" / "dns.log")
            record("dns", p, "flight_server.localdns")
            lb_env = {"MINIODB_LB_ADDR": "127.0.0.1", "MINIODB_LB_GRPC_PORT": str(grpc_port),
                      "MINIODB_LB_REST_PORT": str(rest_port), "MINIODB_LB_METRICS_PORT": str(metrics_port),
                      "MINIODB_LB_STATS_PORT": str(stats_port), "MINIODB_BACKEND_HOST": DNS_NAME,
                      "MINIODB_BACKEND_SLOTS": str(count + 2), "MINIODB_BACKEND_GRPC_PORT": str(grpc_port),
                      "MINIODB_BACKEND_REST_PORT": str(rest_port), "MINIODB_BACKEND_METRICS_PORT": str(metrics_port),
                      "MINIODB_LB_RESOLVERS": "custom", "MINIODB_LB_NAMESERVER": f"127.0.0.1:{dns_port}"}
            cfg = REPO / "deploy" / "haproxy" / "haproxy.cfg"
            p = _spawn([haproxy, "-db", "-f", str(cfg)], root / "haproxy" / "haproxy.log", lb_env)
            record("haproxy", p, str(cfg))
            _wait_port("127.0.0.1", grpc_port, p, "haproxy")
            state["uris"]["load_balancer"] = {
                "flight": f"grpc://127.0.0.1:{grpc_port}", "rest": f"http://127.0.0.1:{rest_port}",
                "metrics": f"http://127.0.0.1:{metrics_port}/metrics",
                "stats": f"http://127.0.0.1:{stats_port}/stats"}
        state_file.write_text(json.dumps(state, indent=2))
    except BaseException:
        _stop(procs)
        state_file.unlink(missing_ok=True)
        raise
    _print_uris(state, root)


def _print_uris(state: dict, root: Path) -> None:
    lb = state["uris"].get("load_balancer")
    if lb:
        click.echo("load balancer (HAProxy, deploy/haproxy/haproxy.cfg):")
        for k, v in lb.items():
            click.echo(f"  {k:8} {v}")
    else:
        click.echo("haproxy is not installed: no load balancer (make system-deps installs it)")
    for i, n in enumerate(state["uris"]["nodes"], 1):
        click.echo(f"node{i}:    " + "  ".join(n.values()))
    click.echo(f"state, logs and data in {root}; stop with `make cluster-down` (miniodb cluster down)")


STOP_ORDER = {"haproxy": 0, "dns": 1, "redis": 3}  # nodes (2) after the load balancer, before Redis


def _stop(procs: list[dict], timeout: float = 60.0) -> None:
    """SIGTERM the recorded processes, load balancer first and Redis last; SIGKILL what outlives timeout."""
    for group in sorted(set(STOP_ORDER.values()) | {2}):
        batch = [p for p in procs if STOP_ORDER.get(p["name"], 2) == group and _alive(p)]
        for p in batch:
            os.kill(p["pid"], signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while any(_alive(p) for p in batch) and time.monotonic() < deadline:
            time.sleep(0.1)
        for p in batch:
            if _alive(p):
                os.kill(p["pid"], signal.SIGKILL)


@cluster.command()
@click.option("--dir", "state_dir", type=click.Path(file_okay=False), default="cluster", show_default=True)
@click.option("--purge", is_flag=True, help="also delete the state folder (data, logs)")
def down(state_dir, purge):
    """Stop the processes `cluster up` started (nodes drain and flush); keep the data unless --purge."""
    root = Path(state_dir).resolve()
    state_file = root / "state.json"
    if not state_file.exists():
        click.echo(f"no cluster state in {root}: nothing to stop")
    else:
        procs = json.loads(state_file.read_text())["processes"]
        _stop(procs)
        state_file.unlink()
        click.echo(f"stopped {len(procs)} processes")
    if purge and root.exists():
        shutil.rmtree(root)


@cluster.command()
@click.option("--dir", "state_dir", type=click.Path(file_okay=False), default="cluster", show_default=True)
def status(state_dir):
    """The cluster's processes and URIs."""
    root = Path(state_dir).resolve()
    state_file = root / "state.json"
    if not state_file.exists():
        raise click.ClickException(f"no cluster state in {root}")
    state = json.loads(state_file.read_text())
    for p in state["processes"]:
        click.echo(f"{p['name']:8} pid {p['pid']:>7}  {'running' if _alive(p) else 'stopped'}")
    _print_uris(state, root)


if __name__ == "__main__":
    cluster()

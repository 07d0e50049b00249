"""Processes the bench starts: its own MinIODB node (when no --uri is given) and the baseline
servers. Each runs as a subprocess that writes a JSON "ready file" once it listens (port 0
everywhere, the bound port read back), and is stopped with SIGTERM (a node flushes on it).

The bench never imports the node: ``python -m clients.cli serve`` is a separate process,
reached over the network like any client would.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import clients


def _pythonpath() -> str:
    """Make the project importable by child processes even when it is not installed."""
    root = str(Path(clients.__file__).resolve().parents[1])
    current = os.environ.get("PYTHONPATH", "")
    return root if not current else f"{root}{os.pathsep}{current}"


class ServiceError(RuntimeError):
    pass


_RUNNING: set[Service] = set()


@atexit.register
def _stop_leftovers() -> None:
    """A caller that crashed without stopping its services does not leave them running."""
    for svc in list(_RUNNING):
        svc.stop(timeout=30)


class Service:
    """A subprocess that writes ``--ready-file`` (JSON) when it is up."""

    def __init__(self, name: str, args: list[str], workdir: Path, env: dict[str, str] | None = None,
                 clean_env_prefix: str | None = None):
        self.name = name
        self.args = args
        self.workdir = Path(workdir)
        self.env = env or {}
        self.clean_env_prefix = clean_env_prefix
        self.proc: subprocess.Popen | None = None
        self.ready: dict = {}
        self.log_path = self.workdir / f"{name}.log"
        self._log = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, timeout: float = 60.0) -> dict:
        self.workdir.mkdir(parents=True, exist_ok=True)
        ready = self.workdir / f"{self.name}.ready.json"
        ready.unlink(missing_ok=True)
        env = dict(os.environ)
        if self.clean_env_prefix:
            env = {k: v for k, v in env.items() if not k.startswith(self.clean_env_prefix)}
        env.update({"PYTHONUNBUFFERED": "1", "PYTHONPATH": _pythonpath(), **self.env})
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, *self.args, "--ready-file", str(ready)],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir,
                                     start_new_session=True)
        _RUNNING.add(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready.exists():
                try:
                    self.ready = json.loads(ready.read_text())
                    return self.ready
                except json.JSONDecodeError:
                    pass  # being written
            if self.proc.poll() is not None:
                raise ServiceError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            time.sleep(0.05)
        self.stop(timeout=5)
        raise ServiceError(f"{self.name} not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 120.0) -> int | None:
        """SIGTERM, wait (a node flushes its buffers), SIGKILL if it does not exit in time."""
        code = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait(timeout=30)
        elif self.proc is not None:
            code = self.proc.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        _RUNNING.discard(self)
        return code


def node_service(data_dir: Path, env: dict[str, str] | None = None) -> Service:
    """An embedded MinIODB node (local folder storage + SQLite under ``data_dir``)."""
    args = ["-m", "clients.cli", "serve", "--data-dir", str(data_dir), "--host", "127.0.0.1",
            "--flight-port", "0", "--rest-port", "0", "--metrics-port", "0", "--log-level", "WARNING"]
    # MINIODB_* of the caller's shell would point the node at Redis/MinIO: the bench's own node
    # is embedded, configured only by what the bench sets. No load balancer watches it, so it
    # stops without the drain delay.
    return Service("node", args, data_dir.parent, env={"MINIODB_SERVER_DRAIN_DELAY": "0", **(env or {})},
                   clean_env_prefix="MINIODB_")


class PortService(Service):
    """A third-party server (redis-server, moto_server) on a free loopback port: started,
    waited for until it accepts connections, stopped like any :class:`Service`."""

    def __init__(self, name: str, cmd: list[str], port: int, workdir: Path, env: dict[str, str] | None = None):
        super().__init__(name, [], workdir, env)
        self.cmd, self.port = cmd, port

    def start(self, timeout: float = 30.0) -> PortService:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=self.workdir, env={**os.environ, **self.env}, start_new_session=True)
        _RUNNING.add(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop(timeout=5)
        raise ServiceError(f"{self.name} not listening on 127.0.0.1:{self.port} after {timeout:.0f}s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _binary(name: str) -> str:
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        raise ServiceError(f"{name} is not installed (redis-server: apt; moto_server: pip install 'moto[server]')")
    return found


def redis_service(workdir: Path) -> PortService:
    """A throw-away redis-server (no persistence) for a bench cluster's metadata."""
    port = free_port()
    cmd = [_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
           "--protected-mode", "no", "--daemonize", "no", "--dir", str(workdir)]
    return PortService("redis-server", cmd, port, workdir)


def moto_service(workdir: Path) -> PortService:
    """An in-memory S3 (moto_server) for a bench cluster's objects; any access key works."""
    port = free_port()
    return PortService("moto_server", [_binary("moto_server"), "-H", "127.0.0.1", "-p", str(port)], port, workdir,
                       env={"MOTO_PORT": str(port)})


def baseline_service(name: str, module: str, workdir: Path, *extra: str) -> Service:
    return Service(name, ["-m", module, *extra], workdir)


class RssSampler:
    """Samples a process's resident set size in a background thread; ``peak`` in bytes."""

    def __init__(self, pid: int, interval: float = 0.05):
        import psutil

        self._proc = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.first = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)

    def _sample(self) -> None:
        import psutil

        try:
            rss = self._proc.memory_info().rss
        except psutil.Error:
            return
        if not self.samples:
            self.first = rss
        self.samples += 1
        self.peak = max(self.peak, rss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> RssSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sample()

"""Helpers for tests against the real local stack: Kafka and Milvus standalone started by the
project's own scripts, and visearch services as processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
KAFKA_BOOTSTRAP = "127.0.0.1:9092"
MILVUS_URI = "http://127.0.0.1:19530"
PROMETHEUS = ROOT / "var" / "tools" / "bin" / "prometheus"  # deploy/tools/install-prometheus.sh


def script(component: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run deploy/<component>/<component>.sh with args (up, down, status)."""
    return subprocess.run(
        ["bash", str(ROOT / "deploy" / component / f"{component}.sh"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class ScriptManaged:
    """Starts a component with its script unless it already runs; stops it only if we started it."""

    def __init__(self, component: str, up_args: tuple[str, ...] = ()) -> None:
        self.component = component
        self.up_args = up_args
        self.started = False

    def up(self) -> None:
        if script(self.component, "status").returncode != 0:
            result = script(self.component, "up", *self.up_args)
            assert result.returncode == 0, f"{self.component} up failed:\n{result.stdout}\n{result.stderr}"
            self.started = True

    def down(self) -> None:
        if self.started:
            script(self.component, "down")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_serving(address: str, process: subprocess.Popen, timeout_s: float = 120.0) -> None:
    """Wait until the gRPC server at ``address`` reports SERVING; fail if the process exits."""
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            assert process.poll() is None, f"server exited early with {process.returncode}"
            try:
                if (
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.3)
    raise TimeoutError(f"{address} not serving after {timeout_s} s")


_BIND_FAILURES = ("Address already in use", "Failed to bind")
_BIND_RETRIES = 3


class ServiceProcess:
    """``visearch serve <service>`` as a child process with its own ports and log file."""

    def __init__(self, service: str, env: dict[str, str], log_dir: Path) -> None:
        self.service = service
        self.port, self.metrics_port = free_port(), free_port()
        self.env = {
            **os.environ,
            **env,
            "VISEARCH_GRPC_PORT": str(self.port),
            "VISEARCH_METRICS_PORT": str(self.metrics_port),
        }
        self.log_path = log_dir / f"{service}.log"
        self.process: subprocess.Popen | None = None
        self._log_offset = 0  # where this start's lines begin in the (appended) log

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> ServiceProcess:
        """Launch the process; with ``wait``, return once it is SERVING (else call :meth:`wait_serving`)."""
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")  # noqa: SIM115 (owned by the child)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "visearch", "serve", self.service],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        if wait:
            self.wait_serving()
        return self

    def wait_serving(self, timeout_s: float = 180.0) -> None:
        """Block until the process reports SERVING (models loaded). A start that failed because its port
        was taken is retried on new ports; any other failure raises with the service's last log lines."""
        assert self.process is not None
        for attempt in range(1, _BIND_RETRIES + 1):
            try:
                wait_serving(self.address, self.process, timeout_s)
                return
            except (AssertionError, TimeoutError) as exc:
                this_run = self.log_path.read_bytes()[self._log_offset :].decode(errors="replace")
                # free_port() closes its probe socket, so another process's client connection can take the
                # port before the service binds it: choose new ports and start again.
                if attempt < _BIND_RETRIES and any(marker in this_run for marker in _BIND_FAILURES):
                    self.port, self.metrics_port = free_port(), free_port()
                    self.env.update(VISEARCH_GRPC_PORT=str(self.port), VISEARCH_METRICS_PORT=str(self.metrics_port))
                    self.start(wait=False)
                    continue
                tail = "\n".join(this_run.splitlines()[-40:])
                raise type(exc)(f"{self.service}: {exc}\n--- last lines of {self.log_path}\n{tail}") from None

    def kill9(self) -> None:
        """SIGKILL: no drain, no commit (a crash)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> int | None:
        """SIGTERM and wait; returns the exit code (SIGKILL after 60 s)."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class ExporterProcess(ServiceProcess):
    """``visearch serve lag-exporter``: no gRPC server; ready once its metrics port answers ``/livez``."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        super().__init__("lag-exporter", env, log_dir)

    def wait_serving(self, timeout_s: float = 60.0) -> None:
        import urllib.request

        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"lag-exporter exited with {self.process.returncode}:\n{self.log_tail(40)}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/livez", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"lag-exporter not answering /livez after {timeout_s} s\n{self.log_tail(40)}")


class PrometheusProcess:
    """A real Prometheus server on 127.0.0.1 (a free port) with ``config`` (a prometheus.yml as a dict); its data,
    config and log live in ``folder``. ``start()`` returns once it answers /-/ready; ``stop()`` always ends it."""

    def __init__(self, config: dict, folder: Path) -> None:
        self.config, self.folder = config, folder
        self.port = 0
        self.process: subprocess.Popen | None = None

    def start(self) -> int:
        (self.folder / "prometheus.yml").write_text(yaml.safe_dump(self.config))
        self.port = free_port()
        with open(self.folder / "prometheus.log", "wb") as log:
            self.process = subprocess.Popen(
                [
                    str(PROMETHEUS),
                    f"--config.file={self.folder / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.folder / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self.ready, 60, what="prometheus ready")
        return self.port

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)


def wait_until(predicate, timeout_s: float, interval_s: float = 0.5, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; return it, or raise TimeoutError."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise TimeoutError(f"{what} not reached in {timeout_s} s")


def stable_response(response) -> bytes:
    """A SearchResponse's bytes without what differs between two identical calls (query id, times), to compare
    two rankings byte for byte."""
    from visearch.v1 import search_pb2

    response = search_pb2.SearchResponse.FromString(response.SerializeToString())
    response.query_id, response.took_ms = "", 0.0
    for used in response.signals:
        used.took_ms = 0.0
    return response.SerializeToString(deterministic=True)

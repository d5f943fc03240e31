"""A usage replica as its own OS process (`tollway serve` with TOLLWAY_COMPONENTS=usage), so tests can
kill -9 it and start it again on the same WAL directory. It shares the gateway's Envoy-facing TLS
files (`envoy_tls`, from tests.support.shared_envoy_tls), so that the gateway's Envoy can reach it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.e2e.harness import free_port
from tests.support import EnvoyCredential, settings_env
from tollway.settings import Settings
from tollway.usage.v1 import usage_pb2, usage_pb2_grpc

TOLLWAY = str(Path(sys.executable).parent / "tollway")


class UsageReplica:
    def __init__(
        self,
        work_dir: Path,
        database_url: str,
        admin_token: str,
        database_schema: str = "",
        envoy_admin_addr: str = "127.0.0.1:1",
        flush_ms: int = 200,
        envoy_tls: dict[str, str] | None = None,
    ) -> None:
        self.work_dir = work_dir
        self.wal_dir = work_dir / "wal"
        self.grpc_port = free_port()
        self.admin_port = free_port()
        self.admin_token = admin_token
        self.env = {
            **os.environ,
            "TOLLWAY_COMPONENTS": "usage",
            "TOLLWAY_DATA_DIR": str(work_dir),
            "TOLLWAY_DATABASE_URL": database_url,
            "TOLLWAY_DATABASE_SCHEMA": database_schema,
            "TOLLWAY_GRPC_ADDR": f"127.0.0.1:{self.grpc_port}",
            "TOLLWAY_ADMIN_ADDR": f"127.0.0.1:{self.admin_port}",
            "TOLLWAY_ADMIN_TOKEN": admin_token,
            "TOLLWAY_USAGE_WAL_DIR": str(self.wal_dir),
            "TOLLWAY_USAGE_FLUSH_MS": str(flush_ms),
            "TOLLWAY_ENVOY_ADMIN_ADDR": envoy_admin_addr,
            "TOLLWAY_LOG_LEVEL": "INFO",
            **settings_env(envoy_tls or {}),
        }
        self.envoy = EnvoyCredential(Settings(data_dir=work_dir, **(envoy_tls or {})).resolved())
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def endpoint(self) -> tuple[str, int]:
        return ("127.0.0.1", self.grpc_port)

    def start(self, timeout: float = 30.0) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        log = open(self.work_dir / f"usage-{self.starts}.log", "wb")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            [TOLLWAY, "serve"], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        with self.envoy.channel(f"127.0.0.1:{self.grpc_port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"usage replica exited: {(self.work_dir / f'usage-{self.starts}.log').read_text()}"
                    )
                try:
                    if health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                        return
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError("usage replica did not become ready")
                time.sleep(0.05)

    def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def stats(self) -> usage_pb2.GetIngestionStatsResponse:
        with grpc.insecure_channel(f"127.0.0.1:{self.admin_port}") as channel:
            stub = usage_pb2_grpc.UsageServiceStub(channel)
            return stub.GetIngestionStats(
                usage_pb2.GetIngestionStatsRequest(),
                metadata=(("authorization", f"Bearer {self.admin_token}"),),
                timeout=5,
            )

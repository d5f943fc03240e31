"""The scale benchmark's replicas and clients (bench/scale.py): `tollway serve` subprocesses, a Check
client on the Envoy-facing port, the standard health service, and the admin RPCs for single changes.

Everything goes through the process boundary, as an operator would see it: the replicas are configured
by TOLLWAY_* variables only, and nothing here reads a replica's internals.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import grpc
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc
from google.rpc import code_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tollway import envoy_contract as contract
from tollway.billing.v1 import billing_pb2, billing_pb2_grpc
from tollway.store.v1 import store_pb2, store_pb2_grpc

AUTHORIZATION_SERVICE = "envoy.service.auth.v3.Authorization"


_ISSUED_PORTS: set[int] = set()


def free_port() -> int:
    """A loopback port free now and not handed out before by this process: bind(0) can return the port
    it returned a moment ago once that socket closed, and two services given one port collide."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _ISSUED_PORTS:
            _ISSUED_PORTS.add(port)
            return port


def free_port_run(count: int, avoid: Collection[int] = ()) -> int:
    """The first of `count` consecutive loopback ports, each free now, not handed out before and not in
    `avoid`: worker k of `tollway serve|up --workers N` listens on the gRPC port + k and its metrics on
    the metrics port + k, and an ephemeral port a client happens to hold there would stop that worker
    from starting."""
    while True:
        first = free_port()
        rest = range(first + 1, first + count)
        if first not in avoid and all(
            p not in _ISSUED_PORTS and p not in avoid and bindable(p) for p in rest
        ):
            _ISSUED_PORTS.update(rest)
            return first


def bindable(port: int) -> bool:
    """Whether a loopback port can be bound right now."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB: resident now, and its peak."""
    values = {"VmRSS": 0, "VmHWM": 0}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in values:
            values[name] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


def tollway_command() -> list[str]:
    """The installed `tollway` entry point next to this interpreter, else the module."""
    script = Path(sys.executable).parent / "tollway"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tollway.app.cli"]


class Replica:
    """One `tollway serve` process."""

    def __init__(
        self,
        name: str,
        components: str,
        database_url: str,
        secret: str,
        admin_token: str,
        envoy_token: str,
        work_dir: Path,
    ) -> None:
        self.name = name
        self.grpc_addr = f"127.0.0.1:{free_port()}"
        self.admin_addr = f"127.0.0.1:{free_port()}"
        self.data_dir = work_dir / name
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = work_dir / f"{name}.log"
        self.env = {
            **os.environ,
            "TOLLWAY_COMPONENTS": components,
            "TOLLWAY_DATABASE_URL": database_url,
            "TOLLWAY_GRPC_ADDR": self.grpc_addr,
            "TOLLWAY_ADMIN_ADDR": self.admin_addr,
            "TOLLWAY_ADMIN_TOKEN": admin_token,
            # The Check client stands in for Envoy: it presents Envoy's token on the Envoy-facing port.
            "TOLLWAY_ENVOY_AUTH": "token",
            "TOLLWAY_ENVOY_TOKEN": envoy_token,
            "TOLLWAY_KEY_HASH_SECRET": secret,
            "TOLLWAY_DATA_DIR": str(self.data_dir),
            "TOLLWAY_METRICS_ADDR": "",
            "TOLLWAY_LOG_LEVEL": "WARNING",
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [*tollway_command(), "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started_at = time.perf_counter()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"replica {self.name} exited ({self.process.returncode}):\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def check_request(full_key: str, api_id: str, path: str) -> external_auth_pb2.CheckRequest:
    """A CheckRequest as Envoy sends it for GET <path> with the key in the key header."""
    http = attribute_context_pb2.AttributeContext.HttpRequest(id="scale", method="GET", path=path)
    http.headers.update(
        {
            ":authority": "gateway",
            ":method": "GET",
            ":path": path,
            contract.API_KEY_HEADER: full_key,
        }
    )
    attributes = attribute_context_pb2.AttributeContext(
        request=attribute_context_pb2.AttributeContext.Request(http=http)
    )
    attributes.source.address.socket_address.address = "192.0.2.1"
    attributes.context_extensions[contract.CONTEXT_API_ID] = api_id
    return external_auth_pb2.CheckRequest(attributes=attributes)


@dataclass(frozen=True)
class Answer:
    allowed: bool
    plan_id: str


class CheckClient:
    """ext_authz Check (with Envoy's token) and the standard health service on a replica's
    Envoy-facing port."""

    def __init__(self, address: str, api_id: str, path: str, envoy_token: str) -> None:
        self.channel = grpc.aio.insecure_channel(address)
        self.metadata = (("authorization", f"Bearer {envoy_token}"),)
        self.stub = external_auth_pb2_grpc.AuthorizationStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.api_id = api_id
        self.path = path
        self._requests: dict[str, external_auth_pb2.CheckRequest] = {}

    def request(self, full_key: str) -> external_auth_pb2.CheckRequest:
        request = self._requests.get(full_key)
        if request is None:
            request = self._requests[full_key] = check_request(full_key, self.api_id, self.path)
        return request

    async def check(self, full_key: str, timeout: float = 30.0) -> Answer:
        response = await self.stub.Check(self.request(full_key), metadata=self.metadata, timeout=timeout)
        plan_id = response.dynamic_metadata.fields[contract.PLAN_ID].string_value
        return Answer(response.status.code == code_pb2.OK, plan_id)

    async def serving(self) -> bool:
        request = health_pb2.HealthCheckRequest(service=AUTHORIZATION_SERVICE)
        try:
            response = await self.health.Check(request, timeout=2.0)
        except grpc.aio.AioRpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    async def close(self) -> None:
        await self.channel.close()


class AdminClient:
    """The admin RPCs one change at a time (StoreService, and BillingService for plan changes)."""

    def __init__(self, address: str, token: str) -> None:
        self.channel = grpc.aio.insecure_channel(address)
        self.store = store_pb2_grpc.StoreServiceStub(self.channel)
        self.billing = billing_pb2_grpc.BillingServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),)

    async def issue_key(self, application_id: str) -> str:
        request = store_pb2.CreateApiKeyRequest(application_id=application_id, name="scale")
        response = await self.store.CreateApiKey(request, metadata=self.metadata, timeout=120)
        return str(response.key)

    async def revoke_key(self, key_id: str) -> None:
        request = store_pb2.RevokeApiKeyRequest(key_id=key_id)
        await self.store.RevokeApiKey(request, metadata=self.metadata, timeout=120)

    async def block_application(self, application_id: str) -> None:
        rule = store_pb2.BlockRule(
            target=store_pb2.BLOCK_TARGET_APPLICATION, value=application_id, reason="scale benchmark"
        )
        request = store_pb2.CreateBlockRuleRequest(block_rule=rule)
        await self.store.CreateBlockRule(request, metadata=self.metadata, timeout=120)

    async def change_plan(self, subscription_id: str, plan_id: str) -> None:
        request = billing_pb2.ChangeSubscriptionPlanRequest(subscription_id=subscription_id, plan_id=plan_id)
        await self.billing.ChangeSubscriptionPlan(request, metadata=self.metadata, timeout=120)

    async def wait_ready(self, deadline: float) -> None:
        """Until the admin port answers a cheap authenticated RPC."""
        while True:
            try:
                await self.store.ListBlockRules(
                    store_pb2.ListBlockRulesRequest(), metadata=self.metadata, timeout=5
                )
                return
            except grpc.aio.AioRpcError:
                if time.perf_counter() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.channel.close()

"""The floor under Tollway's chain: ext_authz Check, ShouldRateLimit and StreamAccessLogs that do
nothing but answer, in one process, on the same grpc.aio stack, server options (tollway/keepalive.py)
and Envoy-facing link (TLS with Envoy's client certificate by default, tollway/envoy_auth.py) as
Tollway's Envoy-facing server, with the health service Envoy's clusters check. Scenario N calls all
three, F Check and the access log only.

Check answers a prebuilt OK carrying the four ext_authz metadata keys the route's rate-limit
actions read (tollway.envoy_contract.DESCRIPTOR_KEYS), so Envoy sends ShouldRateLimit exactly as it
does for Tollway; ShouldRateLimit answers a prebuilt OK; the access-log stream reads and counts
entries. The counts (Check calls, ShouldRateLimit calls, log entries) live in shared memory the
benchmark reads: the smoke test proves with them that each call really happens.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import grpc
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from google.rpc import code_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]

from tollway import envoy_contract as contract
from tollway import event_loop
from tollway.envoy_auth import EnvoyFacingSecurity
from tollway.handler_wrapping import WrappingRegistrar
from tollway.keepalive import KEEPALIVE

CHECKS, RATE_LIMITS, LOG_ENTRIES = range(3)


def _allowed() -> external_auth_pb2.CheckResponse:
    response = external_auth_pb2.CheckResponse(status=status_pb2.Status(code=code_pb2.OK))
    response.dynamic_metadata.update({key: f"noop_{key}" for key in contract.DESCRIPTOR_KEYS})
    return response


class NoopAuthorization(external_auth_pb2_grpc.AuthorizationServicer):
    def __init__(self, counts: Any) -> None:
        self.counts = counts
        self.allowed = _allowed()

    async def Check(self, request: Any, context: Any) -> external_auth_pb2.CheckResponse:
        self.counts[CHECKS] += 1
        return self.allowed


class NoopRateLimit(rls_pb2_grpc.RateLimitServiceServicer):
    def __init__(self, counts: Any) -> None:
        self.counts = counts
        self.ok = rls_pb2.RateLimitResponse(overall_code=rls_pb2.RateLimitResponse.OK)

    async def ShouldRateLimit(self, request: Any, context: Any) -> rls_pb2.RateLimitResponse:
        self.counts[RATE_LIMITS] += 1
        return self.ok


class NoopAccessLog(als_pb2_grpc.AccessLogServiceServicer):
    def __init__(self, counts: Any) -> None:
        self.counts = counts

    async def StreamAccessLogs(
        self, request_iterator: AsyncIterator[als_pb2.StreamAccessLogsMessage], context: Any
    ) -> als_pb2.StreamAccessLogsResponse:
        async for message in request_iterator:
            self.counts[LOG_ENTRIES] += len(message.http_logs.log_entry)
        return als_pb2.StreamAccessLogsResponse()


def _serve(counts: Any, security: EnvoyFacingSecurity, ready: Connection) -> None:
    async def main() -> None:
        server = grpc.aio.server(options=KEEPALIVE.server_options())
        # Envoy's caller check as Tollway's Envoy-facing server applies it: wrapped once per handler.
        registrar: Any = WrappingRegistrar(server, security.wrappers())
        external_auth_pb2_grpc.add_AuthorizationServicer_to_server(NoopAuthorization(counts), registrar)
        rls_pb2_grpc.add_RateLimitServiceServicer_to_server(NoopRateLimit(counts), registrar)
        als_pb2_grpc.add_AccessLogServiceServicer_to_server(NoopAccessLog(counts), registrar)
        # Envoy's clusters check each service's health every 2 s, as they do Tollway's.
        health = health_aio.HealthServicer()
        for service in (
            "",
            contract.AUTHORIZATION_SERVICE,
            contract.RATE_LIMIT_SERVICE,
            contract.ACCESS_LOG_SERVICE,
        ):
            await health.set(service, health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(health, registrar)
        credentials = security.server_credentials()
        if credentials is None:
            port = server.add_insecure_port("127.0.0.1:0")
        else:
            port = server.add_secure_port("127.0.0.1:0", credentials)
        await server.start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        ready.send(port)
        await stop.wait()
        await server.stop(grace=None)

    # The same event loop and collector settings as Tollway's processes (tollway/event_loop.py).
    event_loop.run(main())


@dataclass
class NoopServices:
    """The no-op services in a child process (its own interpreter: the floor gets a core of its own as
    Tollway's process does)."""

    process: BaseProcess
    port: int
    counts: Any

    @classmethod
    def start(cls, security: EnvoyFacingSecurity) -> NoopServices:
        """Serves behind `security`: the Envoy-facing link Tollway's own server would require (TLS with
        Envoy's client certificate, a token, or plaintext), so the floor pays what Tollway pays."""
        context = multiprocessing.get_context("spawn")
        counts = context.RawArray("q", 3)
        receive, send = context.Pipe(duplex=False)
        process = context.Process(
            target=_serve, args=(counts, security, send), name="noop-services", daemon=True
        )
        process.start()
        if not receive.poll(60):
            process.kill()
            raise RuntimeError("the no-op services did not start within 60 s")
        return cls(process, int(receive.recv()), counts)

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def snapshot(self) -> dict[str, int]:
        return {"checks": self.counts[CHECKS], "rate_limits": self.counts[RATE_LIMITS],
                "log_entries": self.counts[LOG_ENTRIES]}  # fmt: skip

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(10)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()

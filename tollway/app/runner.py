"""One Tollway process: database, change feed, the components the settings select, and the two gRPC
servers (Envoy-facing and admin).

The runner names no component: it loops over the registry and asks each selected component for its
servicers, change listeners, background work and metrics. Components never reach into each other;
they share the core only."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]  # grpc-stubs lack aio
from prometheus_client import Gauge

from tollway import event_loop
from tollway.app.registry import COMPONENTS, gateway_contribution
from tollway.auth import BearerTokenInterceptor, server_tls_credentials
from tollway.background import cancel_task
from tollway.catalog.store import CatalogStore
from tollway.changes import ChangeFeed
from tollway.component import Component, GrpcService, ProcessContext, RunningComponent, service_name
from tollway.db import Database
from tollway.deadlines import AdminDeadlineInterceptor
from tollway.handler_wrapping import HandlerWrapper, WrappingRegistrar
from tollway.keepalive import KEEPALIVE, KeepalivePolicy
from tollway.loop_monitor import LoopMonitor
from tollway.metrics import MetricsRegistry, serve_metrics, split_host_port
from tollway.private_files import private_dir, private_sqlite
from tollway.reflection import enable_server_reflection
from tollway.request_guard import RateLimitedLog, RequestGuardInterceptor
from tollway.rpc_metrics import RpcMetricsInterceptor
from tollway.settings import Settings

log = logging.getLogger(__name__)

Running = TypeVar("Running", bound=RunningComponent)

_HEALTH_WATCH_SECONDS = 0.5


def admin_tls_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS for the admin port when a certificate is configured; mTLS when a client CA is too."""
    if not settings.admin_tls_cert_file:
        return None
    return server_tls_credentials(
        settings.admin_tls_cert_file, settings.admin_tls_key_file, settings.admin_tls_client_ca_file
    )


class GrpcServer:
    """A grpc.aio server with reflection and health for every service registered on it.

    Health, per service: NOT_SERVING until its readiness check passes (its component's first load
    completed; once passed it stays passed), then SERVING while its health check holds (the
    throttle's counters in deny mode), NOT_SERVING whenever it does not. The server as a whole ("")
    is SERVING while all of its services are."""

    def __init__(
        self,
        address: str,
        interceptors: tuple[grpc.aio.ServerInterceptor[Any, Any], ...] = (),
        credentials: grpc.ServerCredentials | None = None,
        keepalive: KeepalivePolicy = KEEPALIVE,
        wrappers: tuple[HandlerWrapper, ...] = (),
    ) -> None:
        self.address = address
        self.credentials = credentials
        # Explicit keepalive, agreed with Envoy's (tollway/keepalive.py): no too_many_pings GOAWAY.
        self.server = grpc.aio.server(interceptors=interceptors, options=keepalive.server_options())
        # `wrappers` act like interceptors, applied to each handler once as it registers (the hot path's
        # servers: no interceptor chain per call, tollway/handler_wrapping.py).
        self.registrar: Any = WrappingRegistrar(self.server, wrappers) if wrappers else self.server
        self.services: list[str] = []
        self._readiness: dict[str, Callable[[], bool]] = {}
        self._healthy: dict[str, Callable[[], bool]] = {}
        self._health: Any = None
        self._loaded: set[str] = set()
        # What the health service says now, per name (only changes are sent to its watchers).
        self._status: dict[str, bool] = {}
        self._went_down: set[str] = set()

    def add(
        self,
        service: GrpcService,
        ready: Callable[[], bool] = lambda: True,
        healthy: Callable[[], bool] = lambda: True,
    ) -> None:
        """Registers a servicer; its full name is then listed by health and reflection."""
        self.services.append(service.full_name)
        self._readiness[service.full_name] = ready
        self._healthy[service.full_name] = healthy
        service.add_to_server(self.registrar)

    def status(self, name: str) -> bool:
        """Whether the health service reports `name` SERVING now."""
        return self._status.get(name, False)

    async def update_health(self) -> None:
        """Sets each service's status from its readiness (latched) and its health check (live)."""
        if self._health is None:
            return
        self._loaded = {name for name in self.services if name in self._loaded or self._readiness[name]()}
        serving = {name for name in self._loaded if self._healthy[name]()}
        if serving.issuperset(self.services):
            serving.add("")
        for name in ["", *self.services]:
            now = name in serving
            before = self._status.get(name)
            if before == now:
                continue
            await self._health.set(
                name,
                health_pb2.HealthCheckResponse.SERVING if now else health_pb2.HealthCheckResponse.NOT_SERVING,
            )
            self._status[name] = now
            if name and before and not now:
                log.warning("health: %s NOT_SERVING on %s", name, self.address)
                self._went_down.add(name)
            elif name in self._went_down and now:
                log.info("health: %s SERVING again on %s", name, self.address)
                self._went_down.discard(name)

    async def start(self) -> None:
        self._health = health_aio.HealthServicer()
        await self.update_health()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self.registrar)
        enable_server_reflection([*self.services, service_name(health_pb2, "Health")], self.registrar)
        if self.credentials is None:
            self.server.add_insecure_port(self.address)
        else:
            self.server.add_secure_port(self.address, self.credentials)
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop(grace=1.0)


class TollwayProcess:
    """The services of one Tollway replica. `start()` binds the ports; `stop()` releases everything."""

    def __init__(
        self, settings: Settings, registry: Sequence[Component] = COMPONENTS, *, serve_admin: bool = True
    ) -> None:
        self.settings = settings
        self.components = set(settings.components)
        # Workers beyond the first (tollway/app/workers.py) serve the Envoy-facing port only.
        self.serve_admin = serve_admin
        for component in registry:
            if component.name in self.components:
                component.refuse_unsafe(settings)
        self.db = Database.from_settings(settings.database)
        # One Prometheus registry per process (TOLLWAY_METRICS_ADDR), never the library's global one:
        # the core's instruments live in it, and each component's collectors are included below.
        self.metrics = MetricsRegistry()
        Gauge("tollway_info", "This Tollway process.", ["components"], registry=self.metrics.registry).labels(
            ",".join(sorted(self.components))
        ).set(1)
        self.changes = ChangeFeed(
            self.db,
            settings.change_poll_seconds,
            settings.change_retention_seconds,
            registry=self.metrics.registry,
        )
        # The catalog is core: the admin services write it, xds reads it.
        self.catalog = CatalogStore(self.db, self.changes.committed)
        self._servers: list[GrpcServer] = []
        self._metrics_server: asyncio.Server | None = None
        self._health_watch: asyncio.Task[None] | None = None
        self._health_failures = RateLimitedLog(log)
        self.loop_monitor = LoopMonitor(self.metrics.registry)

        context = ProcessContext(self.db, self.changes, self.catalog, gateway_contribution(settings))
        # The selected components, in registry order (the order they are wired and started).
        self.running: dict[str, RunningComponent] = {
            component.name: component.build(settings, context)
            for component in registry
            if component.name in self.components
        }
        # Fused mode: the component answering Check applies the limits another one keeps, here.
        gate = next((g for r in self.running.values() if (g := r.limit_gate()) is not None), None)
        for running in self.running.values():
            running.use_limit_gate(gate)
        for name, running in self.running.items():
            for collector in running.metrics_collectors():
                self.metrics.include(name, collector)
        # Admin RPCs by method and status (the methods of the services the admin server registers).
        self._admin_services: list[str] = []
        self.admin_rpcs = RpcMetricsInterceptor(self.metrics.registry, self._admin_services)

    def find(self, kind: type[Running]) -> Running | None:
        """The running component of this type, None when the settings did not select it."""
        return next((r for r in self.running.values() if isinstance(r, kind)), None)

    def _wire(self) -> None:
        for running in self.running.values():
            listeners = running.change_listeners()
            ready = self._readiness(running, [listener.name for listener in listeners])
            for service in running.envoy_services():
                self.envoy_facing.add(service, ready, running.healthy)
            for service in running.admin_services() if self.serve_admin else ():
                self.admin.add(service, ready)
            for service in running.consumer_services():
                self.consumer.add(service, ready)
            for listener in listeners:
                self.changes.subscribe(listener)

    def _readiness(self, running: RunningComponent, listeners: Sequence[str]) -> Callable[[], bool]:
        """A component is ready once it says so and each of its change listeners completed its first
        full load."""
        return lambda: running.ready() and all(self.changes.loaded(name) for name in listeners)

    async def start(self) -> None:
        """Returns once every component's view is loaded. The servers listen before that, reporting
        NOT_SERVING on the health service for what is still loading (so Envoy and orchestrators can
        wait on it), SERVING after."""
        if self.settings.data_dir.is_dir():
            private_dir(self.settings.data_dir)
        private_sqlite(self.settings.database_url)
        await self.db.create_schema()
        # grpc.aio servers bind to the running event loop, so they are made here rather than in __init__.
        # Each port first refuses a caller without its credential (Envoy's: tollway/envoy_auth.py; the
        # admin token). Undecodable messages are refused on both ports without a traceback each; the
        # admin port also refuses control characters, oversized strings and out-of-range timestamps.
        security = self.settings.envoy_facing
        self.envoy_facing = GrpcServer(
            self.settings.grpc_addr,
            credentials=security.server_credentials(),
            wrappers=(*security.wrappers(), RequestGuardInterceptor(validate=False)),
        )
        self.admin = GrpcServer(
            self.settings.admin_addr,
            (
                self.admin_rpcs,
                BearerTokenInterceptor(self.settings.admin_token, "admin"),
                RequestGuardInterceptor(validate=True),
                AdminDeadlineInterceptor(self.settings.admin_timeout_ms / 1000),
            ),
            admin_tls_credentials(self.settings),
        )
        # Consumers' own API (the portal's): callers authenticate per call with their session; the
        # same input checks as the admin port.
        self.consumer = GrpcServer(self.settings.portal_grpc_addr, (RequestGuardInterceptor(validate=True),))
        self._wire()
        self._admin_services.extend(self.admin.services)
        # Before the servers: usage replays its WAL before Envoy's streams are accepted.
        for running in self.running.values():
            await running.start()
        self._servers = [
            server for server in (self.envoy_facing, self.admin, self.consumer) if server.services
        ]
        for server in self._servers:
            await server.start()
        try:
            await self.changes.start()
        except BaseException:
            # A replica must not serve without its views: release the ports it bound.
            for server in self._servers:
                await server.stop()
            self._servers = []
            raise
        # What is loaded now lives as long as the process: out of the collector's reach.
        event_loop.freeze_startup_objects()
        for server in self._servers:
            await server.update_health()
        self._health_watch = asyncio.create_task(self._watch_health(), name="health-watch")
        self.loop_monitor.start()
        if self.settings.metrics_addr:
            self._metrics_server = await serve_metrics(
                *split_host_port(self.settings.metrics_addr), self.metrics.render
            )
        warning = security.startup_warning()
        if warning is not None and self.envoy_facing.services:
            log.warning(warning)
        log.info(
            "tollway serving %s: envoy-facing gRPC on %s (Envoy authenticated by %s), admin gRPC on %s, "
            "consumer gRPC on %s, database %s",
            ",".join(sorted(self.components)),
            self.settings.grpc_addr if self.envoy_facing.services else "-",
            security.mode,
            self.settings.admin_addr if self.admin.services else "-",
            self.settings.portal_grpc_addr if self.consumer.services else "-",
            self.db.engine.url.render_as_string(hide_password=True),
        )

    async def _watch_health(self) -> None:
        """Keeps the health service current for the process's life: a component that becomes ready
        after the first loads, a service whose health check fails or recovers."""
        while True:
            await asyncio.sleep(_HEALTH_WATCH_SECONDS)
            for server in self._servers:
                try:
                    await server.update_health()
                except Exception:
                    self._health_failures.event(
                        logging.ERROR,
                        server.address,
                        "health update failed on %s",
                        server.address,
                        exc_info=True,
                    )

    async def stop(self) -> None:
        await self.loop_monitor.stop()
        await cancel_task(self._health_watch)
        self._health_watch = None
        if self._metrics_server is not None:
            self._metrics_server.close()
            await self._metrics_server.wait_closed()
        for server in self._servers:
            await server.stop()
        await self.changes.stop()
        for running in reversed(self.running.values()):
            await running.stop()
        await self.db.dispose()

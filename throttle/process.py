"""throttle/ inside a Tollway process: the plan index, the counter store (memory or Redis), the
ShouldRateLimit service Envoy calls and the quota query on the admin port."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from envoy.service.ratelimit.v3 import rls_pb2

from throttle.cluster_store import ClusterCounterStore
from throttle.counters import CounterStore, MemoryCounterStore
from throttle.gate import ThrottleGate
from throttle.index import ThrottleIndex
from throttle.metrics import ThrottleMetrics
from throttle.redis_setup import check_redis_setup
from throttle.redis_store import RedisCounterStore
from throttle.replicas import MemoryStoreRegistration
from throttle.service import ThrottleService
from throttle.servicer import QuotaServicer, RateLimitServicer, add_rate_limit_service
from throttle.store import TrafficLimitStore
from tollway.admission import LimitGate
from tollway.changes import ChangeListener
from tollway.component import (
    GrpcService,
    RunningComponent,
    service_name,
)
from tollway.db import Database
from tollway.metrics import Render
from tollway.settings import ThrottleSettings
from tollway.throttle.v1 import throttle_pb2, throttle_pb2_grpc
from tollway.vocabulary import RedisMode, ThrottleMode


def counter_store(settings: ThrottleSettings, metrics: ThrottleMetrics) -> CounterStore:
    if settings.store == "redis" and settings.redis_mode == RedisMode.CLUSTER:
        return ClusterCounterStore(
            settings.redis_url, settings.redis_nodes, settings.redis_timeout_ms, metrics=metrics
        )
    if settings.store == "redis":
        return RedisCounterStore(settings.redis_url, settings.redis_timeout_ms, metrics=metrics)
    if settings.store == "memory":
        return MemoryCounterStore()
    raise ValueError(f"unknown rate-limit store {settings.store!r}; use memory or redis")


class Throttle(RunningComponent):
    """The throttle's state in one replica: index, counter store, service, metrics."""

    def __init__(
        self, settings: ThrottleSettings, db: Database, on_commit: Callable[[], None] = lambda: None
    ) -> None:
        self.settings = settings
        self.metrics = ThrottleMetrics()
        self.index = ThrottleIndex(db)
        self.limits = TrafficLimitStore(db, on_commit)
        self.store = counter_store(settings, self.metrics)
        self.service = ThrottleService(
            self.index, self.store, failure_mode=settings.failure_mode, metrics=self.metrics
        )
        # Counters in memory are this replica's alone: a second such replica is refused at start.
        self.registration = MemoryStoreRegistration(db) if settings.store == "memory" else None
        # Fused mode: keymgr's Check in this process applies the limits through this gate.
        self.gate = ThrottleGate(self.service) if settings.mode == ThrottleMode.AUTHZ else None

    def limit_gate(self) -> LimitGate | None:
        return self.gate

    def envoy_services(self) -> Sequence[GrpcService]:
        # Served in both modes: in the fused one Envoy is told of no ratelimit filter and never calls
        # it, but a gateway still configured for the other mode keeps working during a change-over.
        servicer = RateLimitServicer(self.service)
        return (
            GrpcService(
                service_name(rls_pb2, "RateLimitService"),
                lambda server: add_rate_limit_service(servicer, server),
            ),
        )

    def admin_services(self) -> Sequence[GrpcService]:
        # The quota query is an admin RPC, but it reads this replica's counters.
        servicer = QuotaServicer(self.service, self.limits)
        return (
            GrpcService(
                service_name(throttle_pb2, "QuotaService"),
                lambda server: throttle_pb2_grpc.add_QuotaServiceServicer_to_server(servicer, server),
            ),
        )

    def change_listeners(self) -> Sequence[ChangeListener]:
        # Plans, subscriptions and traffic limits, applied row by row (throttle/index.py).
        return (self.index,)

    def ready(self) -> bool:
        return self.index.loaded

    def metrics_renderer(self) -> Render:
        return self.metrics.render

    async def start(self) -> None:
        if self.registration is not None:
            await self.registration.register()
        if self.settings.store == "redis":
            # A Redis mode that does not match the servers refuses to start (redis_setup.py).
            await check_redis_setup(self.settings, self.store)

    async def stop(self) -> None:
        if self.registration is not None:
            await self.registration.unregister()
        await self.store.close()

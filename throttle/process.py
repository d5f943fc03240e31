"""throttle/ inside a Tollway process: the plan index, the counter store (memory or Redis), the
ShouldRateLimit service Envoy calls and the quota query on the admin port."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from envoy.service.ratelimit.v3 import rls_pb2
from prometheus_client.registry import Collector

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
from tollway.background import cancel_task
from tollway.changes import ChangeListener
from tollway.component import (
    GrpcService,
    RunningComponent,
    service_name,
)
from tollway.db import Database
from tollway.settings import ThrottleSettings
from tollway.throttle.v1 import throttle_pb2, throttle_pb2_grpc
from tollway.vocabulary import FailureMode, RedisMode, ThrottleMode

log = logging.getLogger(__name__)


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


# How often the counter store is pinged for the health service (in the background, never per request),
# and how many failed pings in a row make the throttle NOT_SERVING: one slow answer is not an outage.
PROBE_SECONDS = 1.0
PROBE_FAILURES_DOWN = 2


class StoreProbe:
    """Whether the Redis counters answer, as the health service reports it: pinged every
    PROBE_SECONDS (within the Redis deadline); down after PROBE_FAILURES_DOWN failures in a row, up
    again at the first answer."""

    def __init__(self, store: RedisCounterStore, interval: float = PROBE_SECONDS) -> None:
        self.store = store
        self.interval = interval
        self.reachable = True
        self._failures = 0
        self._task: asyncio.Task[None] | None = None

    async def probe(self) -> bool:
        if await self.store.ping():
            if not self.reachable:
                log.info("rate-limit counters reachable again: throttle SERVING")
            self._failures, self.reachable = 0, True
        else:
            self._failures += 1
            if self.reachable and self._failures >= PROBE_FAILURES_DOWN:
                log.warning("rate-limit counters unreachable (deny mode): throttle NOT_SERVING")
                self.reachable = False
        return self.reachable

    async def _run(self) -> None:
        while True:
            await self.probe()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="throttle-store-probe")

    async def stop(self) -> None:
        await cancel_task(self._task)
        self._task = None


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
        # In deny mode a replica whose counters are unreachable refuses every request: its health says
        # so, and Envoy's health checks send the traffic to replicas that can count. (In allow mode it
        # still answers usefully, admitting, and stays SERVING.)
        self.probe = (
            StoreProbe(self.store)
            if isinstance(self.store, RedisCounterStore) and settings.failure_mode == FailureMode.DENY
            else None
        )
        # Fused mode: keymgr's Check in this process applies the limits through this gate.
        # Its health is the throttle's: Check can only refuse while the counters are away in deny mode.
        self.gate = ThrottleGate(self.service, self.healthy) if settings.mode == ThrottleMode.AUTHZ else None

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

    def healthy(self) -> bool:
        return self.probe is None or self.probe.reachable

    def metrics_collectors(self) -> Sequence[Collector]:
        return (self.metrics.registry,)

    async def start(self) -> None:
        if self.registration is not None:
            await self.registration.register()
        if self.settings.store == "redis":
            # A Redis mode that does not match the servers refuses to start (redis_setup.py).
            await check_redis_setup(self.settings, self.store)
        if self.service.rebuilder is not None:
            # Counters lost while no replica ran are rebuilt before the first request needs them.
            await self.service.rebuilder.check()
        if self.probe is not None:
            self.probe.start()

    async def stop(self) -> None:
        if self.probe is not None:
            await self.probe.stop()
        if self.registration is not None:
            await self.registration.unregister()
        if self.service.rebuilder is not None:
            await self.service.rebuilder.stop()
        await self.store.close()

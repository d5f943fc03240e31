"""The throttle's state in one replica, built from Settings: index, counter store, service, metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from throttle.counters import CounterStore, MemoryCounterStore
from throttle.index import ThrottleIndex
from throttle.metrics import ThrottleMetrics, serve_metrics
from throttle.redis_store import RedisCounterStore
from throttle.service import ThrottleService
from throttle.store import TrafficLimitStore
from tollway.db import Database
from tollway.settings import Settings


def counter_store(settings: Settings, metrics: ThrottleMetrics) -> CounterStore:
    if settings.ratelimit_store == "redis":
        return RedisCounterStore(settings.redis_url, settings.redis_timeout_ms, metrics=metrics)
    if settings.ratelimit_store == "memory":
        return MemoryCounterStore()
    raise ValueError(f"unknown rate-limit store {settings.ratelimit_store!r}; use memory or redis")


class Throttle:
    def __init__(
        self, settings: Settings, db: Database, on_commit: Callable[[], None] = lambda: None
    ) -> None:
        self.metrics = ThrottleMetrics()
        self._metrics_addr = settings.throttle_metrics_addr
        self._metrics_server: asyncio.Server | None = None
        self.index = ThrottleIndex(db)
        self.limits = TrafficLimitStore(db, on_commit)
        self.store = counter_store(settings, self.metrics)
        self.service = ThrottleService(
            self.index, self.store, failure_mode=settings.ratelimit_failure_mode, metrics=self.metrics
        )

    async def start(self) -> None:
        if self._metrics_addr:
            host, _, port = self._metrics_addr.rpartition(":")
            self._metrics_server = await serve_metrics(host.strip("[]"), int(port), self.metrics.render)

    async def close(self) -> None:
        if self._metrics_server is not None:
            self._metrics_server.close()
            await self._metrics_server.wait_closed()
        await self.store.close()

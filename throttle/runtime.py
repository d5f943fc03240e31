"""The throttle's state in one replica, built from Settings: index, counter store, service, metrics."""

from __future__ import annotations

from collections.abc import Callable

from throttle.counters import CounterStore, MemoryCounterStore
from throttle.index import ThrottleIndex
from throttle.metrics import ThrottleMetrics
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
        self.index = ThrottleIndex(db)
        self.limits = TrafficLimitStore(db, on_commit)
        self.store = counter_store(settings, self.metrics)
        self.service = ThrottleService(
            self.index, self.store, failure_mode=settings.ratelimit_failure_mode, metrics=self.metrics
        )

    async def start(self) -> None:
        """Nothing to start: `metrics` is served by the process's endpoint (tollway.metrics)."""

    async def close(self) -> None:
        await self.store.close()

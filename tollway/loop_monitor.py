"""How late the event loop runs: the stall every Envoy-facing call waiting behind it also waits.

Why: a Tollway process answers Check, ShouldRateLimit and the access log on one event loop, beside its
background work (usage flushes, change-log catch-up, metering). A step of that work that holds the loop
for 30 ms adds 30 ms to every call that arrived meanwhile: it is the p99 of the gateway, and neither the
calls' own latency histograms (measured inside the handler, after the wait) nor CPU profiles show it.
A timer due every `interval` seconds measures it: how late it fires is how long the loop was held.
Costs one wake-up per interval (20 a second by default)."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Histogram

from tollway.background import cancel_task

# Seconds: a healthy loop fires within a millisecond; past Envoy's 250 ms deadline calls fail.
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
INTERVAL_SECONDS = 0.05


class LoopMonitor:
    def __init__(self, registry: CollectorRegistry, interval: float = INTERVAL_SECONDS) -> None:
        self.interval = interval
        self.lag = Histogram(
            "tollway_event_loop_lag_seconds",
            "How late the event loop ran a timer: how long the loop was held by one step of work.",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.max_lag = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="loop-monitor")

    async def stop(self) -> None:
        await cancel_task(self._task)
        self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self.observe(loop.time() - due)

    def observe(self, late: float) -> None:
        late = max(0.0, late)
        self.lag.observe(late)
        self.max_lag = max(self.max_lag, late)

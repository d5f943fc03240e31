"""The event-loop lag monitor: a step of work that holds the loop shows up as a late timer."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry

from tollway.loop_monitor import LoopMonitor


def _count(registry: CollectorRegistry, le: str) -> float:
    value = registry.get_sample_value("tollway_event_loop_lag_seconds_bucket", {"le": le})
    assert value is not None
    return value


async def test_a_blocking_step_is_measured_as_lag() -> None:
    registry = CollectorRegistry()
    monitor = LoopMonitor(registry, interval=0.01)
    monitor.start()
    try:
        await asyncio.sleep(0.05)  # a few idle ticks first
        time.sleep(0.3)  # holds the loop: the timer due meanwhile fires about 0.3 s late
        await asyncio.sleep(0.05)
    finally:
        await monitor.stop()
    assert monitor.max_lag >= 0.25
    assert _count(registry, "+Inf") - _count(registry, "0.25") >= 1  # that tick, in a bucket past 0.25 s


def test_an_early_timer_counts_as_no_lag() -> None:
    monitor = LoopMonitor(CollectorRegistry())
    monitor.observe(-0.001)
    assert monitor.max_lag == 0.0

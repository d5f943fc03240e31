"""Billing-period counters that the counter store lost are rebuilt before a HARD quota admits again.

A Redis restarted without persistence comes back empty: without this, a subscription that had used
its monthly HARD quota of 30 got 30 more. The store notices the loss at no cost (the marker key it
checks in the same script that counts, see throttle/redis_store.py) and from then on refuses the
requests of HARD-quota subscriptions (429, reason `quota_rebuilding`, counting nothing) while every
other request is counted as usual. This rebuilder, started in the background by the first reply that
shows the loss (or at start), then:

1. opens a rebuild in the store (a token that a second loss would erase);
2. waits SETTLE_SECONDS, so entries of requests admitted just before the loss reach usage's summaries
   (Envoy flushes its access-log buffer every second, usage its WAL every 200 ms);
3. reads what usage metered as admitted in each subscription's current billing period (one aggregate
   per distinct period start, throttle/admitted.py) and raises each period counter to at least that;
4. marks the counters whole; HARD quotas admit again, from the rebuilt count.

Database or Redis errors retry with backoff; meanwhile HARD quotas stay closed (fail closed: a quota
is never granted twice). What usage never received (lost access-log entries) cannot be rebuilt, and
requests admitted in the last moments before the loss whose entries arrive after step 3 are missing
from the rebuilt count: Redis persistence (AOF, appendfsync everysec) avoids both, see the README."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from throttle.admitted import AdmittedUsage
from throttle.counters import CounterStore
from throttle.index import ThrottleIndex
from throttle.limits import Clock, billing_period, expire_at, windows_for
from throttle.metrics import ThrottleMetrics
from tollway.background import cancel_task

log = logging.getLogger(__name__)

# Envoy's access-log flush interval (1 s) plus usage's WAL sync and summary flush (≈ 0.2 s), with room.
SETTLE_SECONDS = 2.0
# What a refused client is told to wait (Retry-After) while the rebuild runs.
RETRY_AFTER_SECONDS = 2
_BACKOFF_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0)
_YIELD_EVERY = 10_000


class QuotaRebuilder:
    def __init__(
        self,
        index: ThrottleIndex,
        store: CounterStore,
        usage: AdmittedUsage,
        clock: Clock,
        metrics: ThrottleMetrics,
        settle_seconds: float = SETTLE_SECONDS,
    ) -> None:
        self.index = index
        self.store = store
        self.usage = usage
        self.clock = clock
        self.metrics = metrics
        self.settle_seconds = settle_seconds
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def ensure_running(self) -> None:
        """Starts a rebuild unless one is running. Called on the request path: no await, no I/O."""
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="throttle-quota-rebuild")

    async def check(self) -> None:
        """At start: rebuilds at once if the store lost its counters (before the first request)."""
        with contextlib.suppress(Exception):  # unreachable now: the first reply will tell
            if not await self.store.check_seeded():
                self.ensure_running()

    async def stop(self) -> None:
        await cancel_task(self._task)
        self._task = None

    async def _run(self) -> None:
        attempt = 0
        self.metrics.quota_rebuild("started")
        while True:
            try:
                if await self.store.check_seeded():
                    return  # another replica finished it
                token = await self.store.begin_rebuild()
                log.warning(
                    "throttle: the counter store lost its counters; HARD quotas refuse (429"
                    " quota_rebuilding) until the billing-period counters are rebuilt from usage"
                )
                await asyncio.sleep(self.settle_seconds)
                while not self.index.loaded:
                    await asyncio.sleep(0.1)
                counters = await self.period_counters()
                if await self.store.seed(token, counters) and await self.store.finish_rebuild(token):
                    self.metrics.quota_rebuild("completed")
                    log.warning("throttle: %d billing-period counters rebuilt from usage", len(counters))
                    return
                self.metrics.quota_rebuild("lost_again")
                log.warning("throttle: the counter store lost its counters again during the rebuild")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.metrics.quota_rebuild("failed")
                log.warning("throttle: quota rebuild failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(_BACKOFF_SECONDS[min(attempt, len(_BACKOFF_SECONDS) - 1)])
                attempt += 1

    async def period_counters(self) -> list[tuple[str, int, int]]:
        """(key, admitted count, expire-at) of every subscription's current billing-period counter that
        usage saw requests for; subscriptions this replica does not know use the calendar month."""
        now = self.clock()
        snapshot = self.index.snapshot
        anchors = {0}
        for i, row in enumerate(snapshot.subscriptions.rows().values()):
            anchors.add(row[5])
            if i % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
        starts = {anchor: billing_period(now, anchor)[0] for anchor in anchors}
        admitted = await self.usage.admitted(set(starts.values()), now)
        counters: list[tuple[str, int, int]] = []
        for start, per_subscription in admitted.items():
            for subscription_id, count in per_subscription.items():
                known = snapshot.subscriptions.get(subscription_id)
                anchor = known.billing_anchor_day if known is not None else 0
                if count <= 0 or starts[anchor] != start:
                    continue  # its period starts elsewhere: counted under that start
                [period] = windows_for(subscription_id, None, now, anchor)
                counters.append((period.key, count, expire_at(period)))
        return counters

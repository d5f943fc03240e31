"""A throttle replica that dies between two steps of a request (for test_cluster_store.py): it takes the
subscription's step of one request under an API-wide limit, then kills itself with SIGKILL before the
API's step, as a replica killed by the OOM killer or kill -9 would. Run: python -m
tests.throttle.crash_between_steps NODES SUBSCRIPTION API CLOCK_ISO HITS"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import datetime

from throttle.cluster_store import ClusterCounterStore
from throttle.counters import DescriptorWindows
from throttle.limits import API, PlanLimits, SharedLimits, windows_for
from tollway.settings import split_addr

PLAN = PlanLimits(requests_per_minute=10)
API_PER_MINUTE = 100


class DiesAfterItsFirstStep(ClusterCounterStore):
    async def _enqueue(self, keys: list[bytes], arg: str, size: int) -> list[int]:
        reply = await super()._enqueue(keys, arg, size)
        os.kill(os.getpid(), signal.SIGKILL)
        return reply


async def main(nodes: str, subscription: str, api_id: str, clock_iso: str, hits: int) -> None:
    store = DiesAfterItsFirstStep(nodes=[split_addr(node) for node in nodes.split(",")], timeout_ms=2000)
    await store.connect()
    now = datetime.fromisoformat(clock_iso)
    windows = windows_for(subscription, PLAN, now, 0, (SharedLimits(API, api_id, per_minute=API_PER_MINUTE),))
    await store.step([DescriptorWindows(windows)], hits, now)
    raise SystemExit("the replica should have died between the steps")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])))

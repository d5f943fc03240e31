"""One throttle replica in its own process (for the concurrency test): ShouldRateLimit on a port,
counters in Redis, a fixed clock shared by all replicas. Run: python -m tests.throttle.replica_server
PORT REDIS_URL CLOCK_ISO. Prints "ready" once serving; stops on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import datetime

import grpc
from envoy.service.ratelimit.v3 import rls_pb2_grpc

from tests.throttle.throttle_fixtures import FakeClock
from throttle.index import ThrottleIndex, ThrottleSnapshot
from throttle.redis_store import RedisCounterStore
from throttle.service import ThrottleService
from throttle.servicer import RateLimitServicer
from tollway.catalog.limits import PlanLimits

# Subscriptions are unknown to the replicas: each request's descriptor names its plan.
PLANS = {
    "p_minute": PlanLimits(requests_per_minute=10),
    "p_mixed": PlanLimits(requests_per_second=17, requests_per_minute=40, monthly_quota=23),
    "p_one": PlanLimits(requests_per_hour=1),
}


async def main(port: int, redis_url: str, clock_iso: str) -> None:
    store = RedisCounterStore(redis_url, 1000)
    index = ThrottleIndex(snapshot=ThrottleSnapshot.build(PLANS, []))
    service = ThrottleService(index, store, clock=FakeClock(datetime.fromisoformat(clock_iso)))
    server = grpc.aio.server()
    rls_pb2_grpc.add_RateLimitServiceServicer_to_server(RateLimitServicer(service), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await server.stop(grace=None)
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))

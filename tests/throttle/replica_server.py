"""One throttle replica in its own process (for the concurrency tests): ShouldRateLimit on a port,
counters in Redis, a fixed clock shared by all replicas. Run: python -m tests.throttle.replica_server
PORT REDIS CLOCK_ISO [MODE [API_PREFIX]], REDIS a URL (MODE standalone, the default) or host:port,...
(MODE cluster). With API_PREFIX, the APIs API_PREFIX<size>_<n> have an API-wide limit per minute
(SHARED_API_LIMITS). Prints "ready" once serving; stops on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import datetime

import grpc
from envoy.service.ratelimit.v3 import rls_pb2_grpc

from tests.throttle.throttle_fixtures import FakeClock
from throttle.cluster_store import ClusterCounterStore
from throttle.index import ThrottleIndex, ThrottleSnapshot
from throttle.limits import API, SharedLimits
from throttle.redis_store import RedisCounterStore
from throttle.service import ThrottleService
from throttle.servicer import RateLimitServicer
from tollway.catalog.limits import PlanLimits
from tollway.settings import split_addr

# Subscriptions are unknown to the replicas: each request's descriptor names its plan.
PLANS = {
    "p_minute": PlanLimits(requests_per_minute=10),
    "p_mixed": PlanLimits(requests_per_second=17, requests_per_minute=40, monthly_quota=23),
    "p_one": PlanLimits(requests_per_hour=1),
}

# Exactness is tested here, not deadlines: a call that timed out on a busy machine would be admitted
# uncounted (failure mode allow), which reads as over-admission.
REDIS_TIMEOUT_MS = 5000
# API-wide limits per minute, by the size word in the API's id; SHARED_APIS of each.
SHARED_API_LIMITS = {"small": 45, "large": 1000}
SHARED_APIS = 50


async def main(port: int, redis: str, clock_iso: str, mode: str = "standalone", api_prefix: str = "") -> None:
    store: RedisCounterStore
    if mode == "cluster":
        nodes = [split_addr(node) for node in redis.split(",")]
        store = ClusterCounterStore(nodes=nodes, timeout_ms=REDIS_TIMEOUT_MS)
        await store.connect()
    else:
        store = RedisCounterStore(redis, REDIS_TIMEOUT_MS)
    shared = [
        SharedLimits(API, f"{api_prefix}{size}_{n}", per_minute=limit)
        for size, limit in SHARED_API_LIMITS.items()
        for n in range(SHARED_APIS)
        if api_prefix
    ]
    index = ThrottleIndex(snapshot=ThrottleSnapshot.build(PLANS, [], shared))
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
    asyncio.run(main(int(sys.argv[1]), *sys.argv[2:]))

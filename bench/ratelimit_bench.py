"""ShouldRateLimit throughput and latency: Tollway's RateLimitService (memory store, Redis store)
each beside a no-op RateLimitService, the same client load, the same run.

A third server, "constant", is registered as Tollway registers its own (`add_rate_limit_service`: the
request undecoded, the answer sent as bytes) and answers every call with one prebuilt admitted
answer: the floor of Tollway's registration, so what the memory store costs above it is Tollway's own
work as a gRPC server pays for it (more than the in-process figure: a closed loop of callers runs at
a lower rate, where the server's per-call work is dearer).

    .venv/bin/python bench/ratelimit_bench.py [--requests 20000] [--concurrency 32] [--subscriptions 1000]
        [--redis-url redis://127.0.0.1:6379/0]

Each server is a grpc.aio server in a child process (one process, as a replica runs); the client is
this process. The real service's plan has a per-minute limit, a daily limit and a monthly quota, so
every decision checks and increments three windows in one atomic step; limits are high enough that
decisions are admitted (the costly path).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from redis.asyncio import Redis

from throttle.counters import CounterStore, MemoryCounterStore
from throttle.index import SubscriptionInfo, ThrottleIndex, ThrottleSnapshot
from throttle.redis_store import RedisCounterStore
from throttle.service import ThrottleService
from throttle.servicer import RateLimitServicer, add_rate_limit_service
from tollway.catalog.limits import PlanLimits

PLAN_ID = "plan_bench"
PLAN = PlanLimits(requests_per_minute=10**9, requests_per_day=10**9, monthly_quota=10**9)


def index_for(subscriptions: int, run: str) -> ThrottleIndex:
    subs = [
        SubscriptionInfo(f"sub_{run}_{i}", PLAN_ID, f"app_{i}", "api_bench", "ACTIVE")
        for i in range(subscriptions)
    ]
    return ThrottleIndex(snapshot=ThrottleSnapshot.build({PLAN_ID: PLAN}, subs))


def rls_request(sub_id: str) -> rls_pb2.RateLimitRequest:
    entries = [
        ratelimit_pb2.RateLimitDescriptor.Entry(key=key, value=value)
        for key, value in (
            ("subscription_id", sub_id),
            ("plan_id", PLAN_ID),
            ("application_id", "app_x"),
            ("api_id", "api_bench"),
        )
    ]
    return rls_pb2.RateLimitRequest(
        domain="tollway", descriptors=[ratelimit_pb2.RateLimitDescriptor(entries=entries)]
    )


class NoopServicer(rls_pb2_grpc.RateLimitServiceServicer):
    _OK = rls_pb2.RateLimitResponse(overall_code=rls_pb2.RateLimitResponse.OK)

    async def ShouldRateLimit(self, request, context):
        return self._OK


class ConstantServicer:
    """Registered through `add_rate_limit_service`: takes the request's bytes, answers prebuilt bytes."""

    _OK: bytes = NoopServicer._OK.SerializeToString()

    async def ShouldRateLimit(self, request: bytes, context: object) -> bytes:
        return self._OK


def make_store(kind: str, redis_url: str) -> CounterStore:
    return RedisCounterStore(redis_url, 1000) if kind == "redis" else MemoryCounterStore()


def serve(kind: str, subscriptions: int, run: str, redis_url: str, port_out) -> None:
    async def serve_forever() -> None:
        server = grpc.aio.server()
        if kind == "noop":
            rls_pb2_grpc.add_RateLimitServiceServicer_to_server(NoopServicer(), server)
        elif kind == "constant":
            add_rate_limit_service(ConstantServicer(), server)  # type: ignore[arg-type]
        else:
            # Registered as Tollway registers it: the request undecoded, an admitted answer as bytes.
            service = ThrottleService(index_for(subscriptions, run), make_store(kind, redis_url))
            add_rate_limit_service(RateLimitServicer(service), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        port_out.send(port)
        await server.wait_for_termination()

    asyncio.run(serve_forever())


async def in_process(
    kind: str, subscriptions: int, run: str, redis_url: str, n: int, concurrency: int
) -> None:
    """Servicer + service + store without gRPC: `concurrency` callers on one event loop (so the Redis
    store batches as it does in a server). CPU per decision is Tollway's own cost per request."""
    store = make_store(kind, redis_url)
    service = ThrottleService(index_for(subscriptions, run + "-inproc"), store)
    servicer = RateLimitServicer(service)
    # As the server hands them over (add_rate_limit_service): the request's bytes.
    requests = [rls_request(f"sub_{run}-inproc_{i % subscriptions}").SerializeToString() for i in range(2000)]
    for r in requests[:100]:
        await servicer.ShouldRateLimit(r, None)  # type: ignore[arg-type]
    counter = iter(range(n))

    async def caller() -> None:
        for i in counter:
            await servicer.ShouldRateLimit(requests[i % len(requests)], None)  # type: ignore[arg-type]

    cpu_started, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    await store.close()
    print(
        f"  in-process ShouldRateLimit, {kind:6s} store, {concurrency} callers:"
        f" {n / elapsed:9.0f} decisions/s  ({cpu / n * 1e6:.1f} µs CPU each)"
    )


async def load(
    port: int, requests: list[rls_pb2.RateLimitRequest], n: int, concurrency: int
) -> tuple[float, float, float]:
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = rls_pb2_grpc.RateLimitServiceStub(channel)
        for r in requests[:200]:
            await stub.ShouldRateLimit(r)  # warm-up
        counter = iter(range(n))

        async def worker() -> None:
            for i in counter:
                t0 = time.perf_counter()
                response = await stub.ShouldRateLimit(requests[i % len(requests)])
                latencies.append(time.perf_counter() - t0)
                assert response.overall_code == rls_pb2.RateLimitResponse.OK

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return n / elapsed, statistics.median(latencies) * 1e3, latencies[int(len(latencies) * 0.99) - 1] * 1e3


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(kind: str, args: argparse.Namespace, run: str) -> tuple[float, float]:
    """(decisions/s, server CPU µs per decision). On a shared machine the second is the steadier one:
    the server's capacity is 1 / its CPU per decision, whatever else competes for the cores."""
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(
        target=serve, args=(kind, args.subscriptions, run, args.redis_url, send), daemon=True
    )
    process.start()
    try:
        port = receive.recv()
        random.seed(1)
        requests = [rls_request(f"sub_{run}_{random.randrange(args.subscriptions)}") for _ in range(2000)]
        assert process.pid is not None
        cpu_before = cpu_seconds(process.pid)
        rate, p50, p99 = asyncio.run(load(port, requests, args.requests, args.concurrency))
        cpu = (cpu_seconds(process.pid) - cpu_before) / args.requests * 1e6
        label = {"noop": "no-op RateLimitService", "constant": "constant, Tollway's registration"}.get(
            kind, f"tollway, {kind} store"
        )
        print(
            f"  gRPC, {label:32s}: {rate:7.0f} decisions/s  p50 {p50:.2f} ms  p99 {p99:.2f} ms"
            f"  server CPU {cpu:5.0f} µs/decision"
        )
        return rate, cpu
    finally:
        process.terminate()
        process.join()


async def forget_counters(redis_url: str, run: str) -> None:
    """The benchmark's counters would otherwise stay in the shared Redis until their periods expire."""
    client = Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"tw:{{sub:sub_{run}*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])
    finally:
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--subscriptions", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    print(f"{args.subscriptions} subscriptions; {args.requests} requests; concurrency {args.concurrency}")
    run = f"bench{int(time.time())}"  # fresh counters in the shared Redis on every run
    for kind in ("memory", "redis"):
        asyncio.run(
            in_process(kind, args.subscriptions, run, args.redis_url, args.requests, args.concurrency)
        )
    # Rounds of no-op, memory, redis back to back: each ratio compares runs seconds apart, so other
    # load on the (shared, 2-core) machine cannot favour one side for long.
    ratios: dict[str, list[float]] = {"memory": [], "redis": []}
    capacity: dict[str, list[float]] = {"memory": [], "redis": []}
    above_constant: list[float] = []
    for round_ in range(args.rounds):
        print(f" round {round_ + 1}")
        noop_rate, noop_cpu = measure("noop", args, run)
        _, constant_cpu = measure("constant", args, run)
        for kind in ("memory", "redis"):
            rate, cpu = measure(kind, args, run)
            ratios[kind].append(rate / noop_rate)
            capacity[kind].append(noop_cpu / cpu)
            if kind == "memory":
                above_constant.append(cpu - constant_cpu)
    asyncio.run(forget_counters(args.redis_url, run))
    for kind in ("memory", "redis"):
        shown = ", ".join(f"{v:.2f}" for v in ratios[kind])
        print(
            f"  → {kind} store: measured throughput {statistics.median(ratios[kind]):.2f} of the no-op's"
            f" (median of rounds: {shown}); server capacity (no-op CPU / real CPU per decision)"
            f" {statistics.median(capacity[kind]):.2f}"
        )
    shown = ", ".join(f"{v:.0f}" for v in above_constant)
    print(
        f"  → memory store above the constant answer (Tollway's own work through gRPC):"
        f" {statistics.median(above_constant):.0f} µs/decision (rounds: {shown})"
    )


if __name__ == "__main__":
    main()

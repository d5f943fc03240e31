"""Rate-limit decisions per second with the counters on a Redis Cluster beside a standalone Redis, same
run, same machine: the throttle's service and store, `--concurrency` callers on one event loop (so
each store batches as it does in a server), over `--subscriptions` subscriptions.

    .venv/bin/python -m bench.cluster_bench [--requests 20000] [--concurrency 32] [--subscriptions 1000]
        [--rounds 3] [--json bench/results-cluster.json]

It starts its own servers (nothing shared is touched): one redis-server, and a Redis Cluster of three
masters and three replicas (tests/redis_cluster.py). Each round measures, back to back:
- standalone: one script call per batch;
- cluster: the batch split per slot, one pipeline per master;
- each again with an API-wide limit on every subscription's API: one script on a standalone Redis, two
  steps (subscription's slot, then the API's) on the cluster.
Printed per case: decisions/s (median of rounds), the throttle's CPU per decision and the Redis
servers' CPU per decision (all nodes together), and the mean requests per script call. On a busy
2-core machine the CPU figures are the steadier ones.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from tests.redis_cluster import RedisClusterNodes
from tests.throttle.throttle_fixtures import PrivateRedis
from throttle.cluster_store import ClusterCounterStore
from throttle.counters import CounterStore
from throttle.index import SubscriptionInfo, ThrottleIndex, ThrottleSnapshot
from throttle.limits import API, SharedLimits
from throttle.metrics import ThrottleMetrics
from throttle.redis_store import RedisCounterStore
from throttle.service import ThrottleService
from tollway.catalog.limits import PlanLimits

PLAN_ID = "plan_bench"
# High limits: every decision is admitted, the costly path (every window checked and incremented).
PLAN = PlanLimits(requests_per_minute=10**9, requests_per_day=10**9, monthly_quota=10**9)
API_ID = "api_bench"
CASES = ("standalone", "cluster", "standalone+api", "cluster+api")


@dataclass
class Measured:
    case: str
    decisions_per_second: float
    throttle_cpu_us: float
    redis_cpu_us: float
    requests_per_script_call: float


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def index_for(subscriptions: int, run: str, shared: bool) -> ThrottleIndex:
    subs = [
        SubscriptionInfo(f"sub_{run}_{i}", PLAN_ID, f"app_{run}_{i}", API_ID, "ACTIVE")
        for i in range(subscriptions)
    ]
    limits = [SharedLimits(API, API_ID, per_minute=10**9)] if shared else []
    return ThrottleIndex(snapshot=ThrottleSnapshot.build({PLAN_ID: PLAN}, subs, limits))


async def measure(
    case: str, store: CounterStore, metrics: ThrottleMetrics, redis_pids: list[int], args: argparse.Namespace
) -> Measured:
    run = f"{case.replace('+', '_')}{time.monotonic_ns()}"
    service = ThrottleService(
        index_for(args.subscriptions, run, case.endswith("+api")), store, metrics=metrics
    )
    random.seed(1)
    descriptors = [
        [{"subscription_id": f"sub_{run}_{random.randrange(args.subscriptions)}"}] for _ in range(2000)
    ]
    for descriptor in descriptors[:200]:
        await service.should_rate_limit("tollway", descriptor)  # warm-up: connections, caches
    calls_before, requests_before = metrics.batch_requests.count, metrics.batch_requests.sum
    counter = iter(range(args.requests))

    async def caller() -> None:
        for i in counter:
            decision = await service.should_rate_limit("tollway", descriptors[i % len(descriptors)])
            assert not decision.over_limit and "store_unavailable" not in decision.metadata, (
                case,
                dict(metrics.redis_errors),
                dict(metrics.node_errors),
            )

    redis_before = sum(cpu_seconds(pid) for pid in redis_pids)
    cpu_started, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(args.concurrency)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    redis_cpu = sum(cpu_seconds(pid) for pid in redis_pids) - redis_before
    calls = metrics.batch_requests.count - calls_before
    return Measured(
        case,
        args.requests / elapsed,
        cpu / args.requests * 1e6,
        redis_cpu / args.requests * 1e6,
        (metrics.batch_requests.sum - requests_before) / max(calls, 1),
    )


async def one_round(
    standalone: PrivateRedis, cluster: RedisClusterNodes, args: argparse.Namespace
) -> list[Measured]:
    assert standalone.process is not None
    results = []
    for case in CASES:
        metrics = ThrottleMetrics()
        store: RedisCounterStore
        if case.startswith("cluster"):
            store = ClusterCounterStore(nodes=cluster.nodes, timeout_ms=1000, metrics=metrics)
            await store.connect()
            pids = [process.pid for process in cluster.processes.values()]
        else:
            store = RedisCounterStore(standalone.url, 1000, metrics=metrics)
            pids = [standalone.process.pid]
        try:
            results.append(await measure(case, store, metrics, pids, args))
        finally:
            await store.close()
    return results


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--subscriptions", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the medians here")
    args = parser.parse_args(argv)
    print(
        "command:", " ".join(["python -m bench.cluster_bench", *(argv if argv is not None else sys.argv[1:])])
    )
    print(
        f"{args.subscriptions} subscriptions; {args.requests} requests per case; concurrency "
        f"{args.concurrency}; {args.rounds} rounds; started {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    rounds: list[list[Measured]] = []
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        (work / "standalone").mkdir()
        standalone = PrivateRedis(work / "standalone")
        cluster = RedisClusterNodes(work / "cluster")
        try:
            standalone.start()
            cluster.start()
            for round_ in range(args.rounds):
                print(f" round {round_ + 1}")
                measured = asyncio.run(one_round(standalone, cluster, args))
                for m in measured:
                    print(
                        f"  {m.case:15s} {m.decisions_per_second:8.0f} decisions/s  throttle CPU"
                        f" {m.throttle_cpu_us:5.0f} µs, Redis CPU {m.redis_cpu_us:5.1f} µs per decision;"
                        f" {m.requests_per_script_call:5.1f} requests per script call"
                    )
                rounds.append(measured)
        finally:
            cluster.stop()
            standalone.stop()
    medians: dict[str, dict[str, float]] = {}
    for index, case in enumerate(CASES):
        of_case = [asdict(measured[index]) for measured in rounds]
        medians[case] = {
            key: statistics.median(row[key] for row in of_case) for key in of_case[0] if key != "case"
        }
    base = medians["standalone"]["decisions_per_second"]
    print(" medians:")
    for case, values in medians.items():
        print(
            f"  {case:15s} {values['decisions_per_second']:8.0f} decisions/s"
            f" ({values['decisions_per_second'] / base:.2f} of standalone); throttle CPU"
            f" {values['throttle_cpu_us']:.0f} µs, Redis CPU {values['redis_cpu_us']:.1f} µs per decision"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"args": vars(args) | {"json": str(args.json)}, "medians": medians}, indent=2)
        )
    return medians


if __name__ == "__main__":
    main()

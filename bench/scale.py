"""Scale benchmark: two keymgr replicas on one PostgreSQL database holding N applications, N
subscriptions and N API keys, observed from outside as an operator would.

    .venv/bin/python -m bench.scale --keys 100000 [--keys 1000000] [--database postgresql://...] [--quick]

For each N it creates a private database on the server `--database` points at (default
postgresql://postgres@127.0.0.1:5432/postgres; dropped at the end), COPYs the rows in (real keyed
hashes, bench/scale_seed.py), and starts two `tollway serve` replicas: A (admin, keymgr, billing: the
admin RPCs) and B (keymgr only). It measures:

- cold load, per replica: start to the first allowed Check of a seeded key (the truth), beside start to
  health SERVING for the Authorization service; RSS after load and the peak RSS (/proc VmRSS, VmHWM);
- change-to-visible on B for changes made through A's admin RPCs, from the RPC's answer (committed) to
  the first Check on B that shows it: a new key (allowed), a revocation (refused), a block rule on the
  application (refused), a plan change (BillingService.ChangeSubscriptionPlan; the Check's metadata names
  the new plan); p50/p99 over `--changes` of each;
- Check latency on B under a paced load (`--check-rate` per second from `--callers` concurrent callers),
  at rest and then while `--change-rate` changes per second (new keys and revocations, alternating)
  stream in through A, same run; the slowest single Check in each.

It prints one table and writes bench/results-scale.json. With several --keys, the change-to-visible
figures side by side show whether the work per change grows with N. 100k takes a few minutes; 1M takes
much longer (seeding ~1 min, and as long as every change reloads every key, each change costs a full
load on both replicas: use --changes 10 or --quick there).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from bench.scale_replicas import AdminClient, Answer, CheckClient, Replica, memory_kib
from bench.scale_report import KINDS, finite, table, work_per_change
from bench.scale_seed import (
    API_ID,
    CONTEXT_PATH,
    PLAN_B,
    Seeded,
    create_database,
    drop_database,
    private_url,
    seed,
)

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
RESULTS = Path(__file__).resolve().parent / "results-scale.json"
CHECK_POOL = 1000
POLL_SECONDS = 0.002


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def summary_ms(seconds: list[float]) -> dict[str, float | int]:
    return {
        "n": len(seconds),
        "p50_ms": percentile(seconds, 0.5) * 1e3,
        "p99_ms": percentile(seconds, 0.99) * 1e3,
        "max_ms": max(seconds, default=math.nan) * 1e3,
    }


class Layout:
    """Which seeded indices each phase uses, so that no change touches another phase's keys."""

    def __init__(self, count: int, changes: int, stream_revocations: int) -> None:
        self.pool = range(min(CHECK_POOL, count // 4))
        start = self.pool.stop
        self.targets: dict[str, range] = {}
        for kind in ("revocation", "block", "plan_change"):
            self.targets[kind] = range(start, start + changes)
            start += changes
        self.stream_revocations = range(start, start + stream_revocations)
        self.reserved = self.stream_revocations.stop
        if self.reserved > count:
            raise SystemExit(f"--keys {count} is too few for these settings (needs {self.reserved})")


async def cold_load(replica: Replica, client: CheckClient, key: str, timeout: float) -> dict[str, Any]:
    """Start to the first allowed Check of a seeded key, and start to health SERVING."""
    health_at: float | None = None
    ready_at: float | None = None
    deadline = replica.started_at + timeout
    while ready_at is None or (health_at is None and time.perf_counter() < ready_at + 5):
        replica.check_alive()
        if time.perf_counter() > deadline:
            raise RuntimeError(f"replica {replica.name} not ready after {timeout} s:\n{replica.log_tail()}")
        if health_at is None and await client.serving():
            health_at = time.perf_counter()
        if ready_at is None:
            try:
                if (await client.check(key, timeout=5)).allowed:
                    ready_at = time.perf_counter()
            except grpc.aio.AioRpcError:
                pass
        await asyncio.sleep(0.02)
    await asyncio.sleep(1.0)  # let the load's garbage go before reading RSS
    rss, peak = memory_kib(replica.pid)
    return {
        "ready_s": ready_at - replica.started_at,
        "health_serving_s": None if health_at is None else health_at - replica.started_at,
        "rss_mb": rss / 1024,
        "peak_rss_mb": peak / 1024,
    }


async def wait_for(client: CheckClient, key: str, done: Callable[[Answer], bool], timeout: float) -> bool:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if done(await client.check(key)):
            return True
        await asyncio.sleep(POLL_SECONDS)
    return False


async def change_to_visible(
    admin: AdminClient, other: CheckClient, seeded: Seeded, layout: Layout, timeout: float
) -> dict[str, Any]:
    """For each kind, one change at a time through A, timed until B's Check shows it."""
    pool_apps = itertools.cycle(layout.pool)

    async def new_key(_index: int) -> str:
        return await admin.issue_key(Seeded.application_id(next(pool_apps)))

    async def revocation(index: int) -> str:
        await admin.revoke_key(seeded.key_ids[index])
        return seeded.full_keys[index]

    async def block(index: int) -> str:
        await admin.block_application(Seeded.application_id(index))
        return seeded.full_keys[index]

    async def plan_change(index: int) -> str:
        await admin.change_plan(Seeded.subscription_id(index), PLAN_B)
        return seeded.full_keys[index]

    kinds: dict[str, tuple[Callable[[int], Awaitable[str]], Callable[[Answer], bool], range]] = {
        "new_key": (new_key, lambda a: a.allowed, layout.targets["revocation"]),  # indices unused
        "revocation": (revocation, lambda a: not a.allowed, layout.targets["revocation"]),
        "block": (block, lambda a: not a.allowed, layout.targets["block"]),
        "plan_change": (
            plan_change,
            lambda a: a.allowed and a.plan_id == PLAN_B,
            layout.targets["plan_change"],
        ),
    }
    results: dict[str, Any] = {}
    for kind, (make, done, indices) in kinds.items():
        visible: list[float] = []
        rpc: list[float] = []
        timeouts = 0
        for index in indices:
            started = time.perf_counter()
            key = await make(index)
            committed = time.perf_counter()
            rpc.append(committed - started)
            if await wait_for(other, key, done, timeout):
                visible.append(time.perf_counter() - committed)
            else:
                timeouts += 1
        results[kind] = {
            **summary_ms(visible),
            "timeouts": timeouts,
            "admin_rpc_p50_ms": percentile(rpc, 0.5) * 1e3,
        }
        shown = results[kind]
        print(f"    {kind:12s} visible on B: p50 {shown['p50_ms']:.0f} ms, p99 {shown['p99_ms']:.0f} ms")
    return results


async def settle(admin: AdminClient, other: CheckClient, application_id: str, timeout: float) -> None:
    """Until B has applied everything up to now: a fresh key issued through A is allowed on B."""
    key = await admin.issue_key(application_id)
    await wait_for(other, key, lambda a: a.allowed, timeout)
    await asyncio.sleep(0.5)


async def paced_checks(
    client: CheckClient, keys: list[str], rate: float, seconds: float, callers: int
) -> dict[str, Any]:
    """`rate` Checks per second from `callers` callers for `seconds`; a caller that falls behind skips
    the slots it missed rather than bursting, so a stall shows as one slow Check, not a queue."""
    latencies: list[float] = []
    refused = 0
    interval = callers / rate
    started = time.perf_counter()
    end = started + seconds

    async def caller(offset: int) -> None:
        nonlocal refused
        slot = started + offset * interval / callers
        for i in itertools.count(offset, callers):
            now = time.perf_counter()
            if slot > now:
                await asyncio.sleep(slot - now)
            if time.perf_counter() >= end:
                return
            sent = time.perf_counter()
            answer = await client.check(keys[i % len(keys)])
            latencies.append(time.perf_counter() - sent)
            refused += not answer.allowed
            slot = max(slot + interval, time.perf_counter())

    await asyncio.gather(*(caller(offset) for offset in range(callers)))
    return {**summary_ms(latencies), "refused": refused, "rate_per_s": len(latencies) / seconds}


async def stream_changes(
    admin: AdminClient, seeded: Seeded, layout: Layout, rate: float, seconds: float
) -> dict[str, Any]:
    """`rate` changes per second through A for `seconds` (new keys and revocations, alternating),
    open loop: each starts on its slot, whatever the ones before are doing."""
    revocations = iter(layout.stream_revocations)
    pool_apps = itertools.cycle(layout.pool)
    rpc: list[float] = []
    failed = 0

    async def one(n: int) -> None:
        nonlocal failed
        sent = time.perf_counter()
        try:
            if n % 2:
                index = next(revocations, None)
                if index is not None:
                    await admin.revoke_key(seeded.key_ids[index])
            else:
                await admin.issue_key(Seeded.application_id(next(pool_apps)))
        except grpc.aio.AioRpcError:
            failed += 1
            return
        rpc.append(time.perf_counter() - sent)

    tasks: list[asyncio.Task[None]] = []
    started = time.perf_counter()
    for n in itertools.count():
        slot = started + n / rate
        if slot >= started + seconds:
            break
        await asyncio.sleep(max(0.0, slot - time.perf_counter()))
        tasks.append(asyncio.create_task(one(n)))
    committed_in_window = len(rpc)
    await asyncio.gather(*tasks)
    return {
        "sent": len(tasks),
        "committed_in_window": committed_in_window,
        "committed_per_s": committed_in_window / seconds,
        "failed": failed,
        "admin_rpc": summary_ms(rpc),
    }


async def run_one(count: int, args: argparse.Namespace, work_dir: Path) -> dict[str, Any]:
    name = f"tollway_scale_{os.getpid()}_{count}"
    secret = secrets.token_urlsafe(24)
    token = secrets.token_urlsafe(24)
    envoy_token = secrets.token_urlsafe(24)
    stream_revocations = int(args.change_rate * args.phase_seconds) // 2 + 10
    layout = Layout(count, args.changes, stream_revocations)
    print(f"N = {count:,}: database {name}")
    await create_database(args.database, name)
    url = private_url(args.database, name)
    replicas: list[Replica] = []
    clients: list[CheckClient] = []
    admin: AdminClient | None = None
    try:
        seeded = await seed(url, count, secret, layout.reserved)
        print(f"  seeded {count:,} applications, subscriptions and keys in {seeded.seconds:.1f} s")
        result: dict[str, Any] = {"keys": count, "seed_s": seeded.seconds, "replicas": {}}
        for replica_name, components in (("A", "admin,keymgr,billing"), ("B", "keymgr")):
            replica = Replica(
                replica_name, components, url, secret, token, envoy_token, work_dir / str(count)
            )
            replicas.append(replica)
            client = CheckClient(replica.grpc_addr, API_ID, CONTEXT_PATH + "/x", envoy_token)
            clients.append(client)
            replica.start()
            load = await cold_load(replica, client, seeded.full_keys[0], args.load_timeout)
            result["replicas"][replica_name] = {"components": components, **load}
            print(
                f"  replica {replica_name}: ready in {load['ready_s']:.1f} s, RSS {load['rss_mb']:.0f} MB"
                f" (peak {load['peak_rss_mb']:.0f} MB)"
            )
        admin = AdminClient(replicas[0].admin_addr, token)
        await admin.wait_ready(time.perf_counter() + 30)
        other = clients[1]
        pool_keys = [seeded.full_keys[i] for i in layout.pool]
        settle_app = Seeded.application_id(layout.pool[0])

        print(f"  change-to-visible, {args.changes} of each kind")
        result["visible"] = await change_to_visible(admin, other, seeded, layout, args.visible_timeout)

        await settle(admin, other, settle_app, args.visible_timeout)
        print(f"  Check on B at rest, {args.phase_seconds:.0f} s")
        result["check_at_rest"] = await paced_checks(
            other, pool_keys, args.check_rate, args.phase_seconds, args.callers
        )
        print(f"  Check on B while {args.change_rate:.0f} changes/s stream in through A")
        during, stream = await asyncio.gather(
            paced_checks(other, pool_keys, args.check_rate, args.phase_seconds, args.callers),
            stream_changes(admin, seeded, layout, args.change_rate, args.phase_seconds),
        )
        result["check_during_changes"] = during
        result["change_stream"] = stream
        for replica_name, replica in zip(("A", "B"), replicas, strict=True):
            rss, peak = memory_kib(replica.pid)
            result["replicas"][replica_name].update(end_rss_mb=rss / 1024, end_peak_rss_mb=peak / 1024)
        return result
    finally:
        if admin is not None:
            await admin.close()
        for client in clients:
            await client.close()
        for replica in replicas:
            replica.stop()
        await drop_database(args.database, name)


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", type=int, action="append", help="N (repeatable) [default: 100000]")
    parser.add_argument(
        "--database", default=DEFAULT_SERVER, help="PostgreSQL server to create the private database on"
    )
    parser.add_argument("--changes", type=int, default=100, help="changes of each kind timed to visible")
    parser.add_argument("--phase-seconds", type=float, default=10.0, help="length of each Check phase")
    parser.add_argument("--check-rate", type=float, default=400.0, help="Checks per second on B")
    parser.add_argument("--callers", type=int, default=4, help="concurrent Check callers")
    parser.add_argument("--change-rate", type=float, default=100.0, help="changes per second in the stream")
    parser.add_argument(
        "--visible-timeout", type=float, default=120.0, help="give up on one change after (s)"
    )
    parser.add_argument("--load-timeout", type=float, default=600.0, help="give up on a cold load after (s)")
    parser.add_argument("--quick", action="store_true", help="10 changes of each kind, 5 s phases")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.keys = sorted(set(args.keys or [100_000]))
    if args.quick:
        args.changes = min(args.changes, 10)
        args.phase_seconds = min(args.phase_seconds, 5.0)
    return args


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tollway-scale-") as tmp:
        runs = [await run_one(count, args, Path(tmp)) for count in args.keys]
    report: dict[str, Any] = {
        "command": " ".join(["python -m bench.scale", *sys.argv[1:]]),
        "commit": _commit(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": {
            key: getattr(args, key)
            for key in ("changes", "phase_seconds", "check_rate", "callers", "change_rate")
        },
        "runs": runs,
    }
    if len(runs) > 1:
        report["work_per_change"] = work_per_change(runs)
    return report


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report = asyncio.run(main_async(args))
    print()
    print(table(report["runs"]))
    if "work_per_change" in report:
        comparison = report["work_per_change"]
        print()
        print(
            "work per change (change-to-visible p50 vs the smallest N; N grew",
            " / ".join(f"{k:g}x" for k in comparison["keys_ratio"]) + ")",
        )
        for kind in KINDS:
            print(f"  {kind:12s} " + " / ".join(f"{r:.2f}x" for r in comparison[kind]["ratio"]))
    args.output.write_text(json.dumps(finite(report), indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()

"""Invoice run vs one SQL aggregate over the same usage rows, same run, same database.

    .venv/bin/python bench/invoice_bench.py [--subscriptions 10000] [--windows 144] \
        [--backend sqlite|postgres]

Seeds N subscriptions (one application each, a plan with fee + included + graduated tiers) and, per
subscription, `--windows` minute summaries spread over November 2026 (a fully dense month would be
43,200 per subscription; the run's cost depends on the number of rows, reported below). Then, on the
same database:
  1. aggregate: SELECT subscription_id, plan_id, SUM(...) ... GROUP BY over the month's minute rows;
  2. invoice run: BillingRepository.generate(month=(2026, 11)) — the same aggregate, pricing, and
     writing every draft invoice, line and billed segment in one transaction.
Goal (issue 5): invoice run <= 3 x the aggregate.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, insert, select, text

from bench.subscribers import API_ID, bench_database, seed_subscribers
from billing.store import BillingRepository
from tollway import schema, schema_usage
from tollway.db import Database
from usage.aggregate import KEY_COLUMNS

MONTH_START = datetime(2026, 11, 1, tzinfo=UTC)
MINUTES = 30 * 24 * 60


async def seed(db: Database, subscriptions: int, windows: int) -> int:
    plan = schema.Plan(
        id="plan_bench",
        name="bench",
        currency="EUR",
        recurring_fee="49.00",
        included_requests=1000,
        tiers=[{"up_to": 10000, "unit_price": "0.001"}, {"up_to": 0, "unit_price": "0.0004"}],
    )
    await seed_subscribers(db, plan, subscriptions, MONTH_START - timedelta(days=40))

    rng = random.Random(5)
    rows = 0
    batch: list[dict[str, object]] = []

    async def flush() -> None:
        if not batch:
            return
        if db.is_postgres:
            import asyncpg

            conn = await asyncpg.connect(db.asyncpg_dsn())
            try:
                columns = list(batch[0])
                await conn.copy_records_to_table(
                    "usage_window",
                    records=[tuple(r[c] for c in columns) for r in batch],
                    columns=columns,
                    schema_name=db.schema_name or None,
                )
            finally:
                await conn.close()
        else:
            async with db.session() as session:
                await session.exec(insert(schema_usage.UsageWindow), params=batch)  # type: ignore[call-overload]
                await session.commit()
        batch.clear()

    step = MINUTES // windows
    # Counter columns usage/ may add (latency buckets, ...): zero, as a fresh window has them.
    extra_zeros = {c.name: 0 for c in schema_usage.UsageWindow.__table__.columns if c.name not in KEY_COLUMNS}  # type: ignore[attr-defined]
    for i in range(subscriptions):
        offset = rng.randrange(step)
        for w in range(windows):
            batch.append(
                {
                    **extra_zeros,
                    "granularity": "minute",
                    "window_start": MONTH_START + timedelta(minutes=offset + w * step),
                    "api_id": API_ID,
                    "subscription_id": f"sub_{i:06d}",
                    "application_id": f"app_{i:06d}",
                    "plan_id": plan.id,
                    "key_id": "",
                    "success": rng.randrange(0, 400),
                    "overage": 0,
                    "client_error": rng.randrange(0, 3),
                    "upstream_fault": 0,
                    "throttled": rng.randrange(0, 2),
                    "unauthorized": 0,
                    "ratelimit_error": 0,
                    "request_bytes": 0,
                    "response_bytes": 0,
                    "latency_us_sum": 0,
                    "latency_us_max": 0,
                }
            )
            rows += 1
        if len(batch) >= 50_000:
            await flush()
    await flush()
    if db.is_postgres:
        async with db.engine.begin() as conn:
            await conn.execute(text("ANALYZE"))
    return rows


async def aggregate(db: Database) -> float:
    uw = schema_usage.UsageWindow
    columns = [uw.success, uw.overage, uw.client_error, uw.upstream_fault, uw.throttled, uw.unauthorized,
               uw.ratelimit_error]  # fmt: skip
    statement = (
        select(uw.subscription_id, uw.plan_id, *(func.sum(c) for c in columns))
        .where(
            uw.granularity == "minute",
            uw.window_start >= MONTH_START,  # type: ignore[operator]
            uw.window_start < datetime(2026, 12, 1, tzinfo=UTC),  # type: ignore[operator]
            uw.subscription_id != "",
        )
        .group_by(uw.subscription_id, uw.plan_id)
    )
    start = time.perf_counter()
    async with db.session() as session:
        rows = (await session.exec(statement)).all()  # type: ignore[call-overload]
    elapsed = time.perf_counter() - start
    assert rows
    return elapsed


async def run(args: argparse.Namespace) -> None:
    async with bench_database(args.backend, "tw_bench") as db:
        t0 = time.perf_counter()
        rows = await seed(db, args.subscriptions, args.windows)
        seconds = time.perf_counter() - t0
        print(f"seeded {args.subscriptions:,} subscriptions, {rows:,} minute rows in {seconds:.1f} s")
        billing = BillingRepository(db, lambda: None)
        aggregates = [await aggregate(db) for _ in range(3)]
        t0 = time.perf_counter()
        views = await billing.generate(month=(2026, 11))
        first_run = time.perf_counter() - t0
        t0 = time.perf_counter()
        views = await billing.generate(month=(2026, 11))  # replaces every draft
        rerun = time.perf_counter() - t0
        assert len(views) == args.subscriptions
        best = min(aggregates)
        each = ", ".join(f"{a:.3f}" for a in aggregates)
        print(f"backend {args.backend}: aggregate {best:.3f} s (best of 3: {each})")
        print(f"invoice run (create drafts): {first_run:.3f} s = {first_run / best:.2f} x aggregate")
        print(f"invoice run (replace drafts): {rerun:.3f} s = {rerun / best:.2f} x aggregate")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument("--windows", type=int, default=144, help="minute summaries per subscription")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()

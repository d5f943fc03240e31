"""One metering quota round over many subscriptions on PostgreSQL: what `round(all_quotas=True)` costs.

    .venv/bin/python -m bench.metering_bench [--subscriptions 20000] [--windows 48] \
        [--backend postgres|sqlite]

Seeds N subscriptions (one application each) on a plan with a monthly quota, and per subscription
`--windows` minute summaries in its current period (so most cross a quota alert threshold). Then times
on the same database, with the clock inside that period:
  1. the first quota round (reads every subscription's usage and raises its QUOTA alerts);
  2. steady rounds (nothing changed: the same reads, no alert to raise), best of `--rounds`;
  3. a 0.2 s round with nothing to burn or measure.
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
from billing.metering import Metering
from tollway import schema, schema_billing, schema_usage
from tollway.db import Database
from usage.aggregate import KEY_COLUMNS

PERIOD_START = datetime(2026, 11, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


async def _copy(db: Database, table: str, batch: list[dict[str, object]]) -> None:
    if not batch:
        return
    if db.is_postgres:
        import asyncpg

        conn = await asyncpg.connect(db.asyncpg_dsn())
        try:
            columns = list(batch[0])
            await conn.copy_records_to_table(
                table, records=[tuple(r[c] for c in columns) for r in batch], columns=columns,
                schema_name=db.schema_name or None,
            )  # fmt: skip
        finally:
            await conn.close()
    else:
        async with db.session() as session:
            await session.exec(insert(schema_usage.UsageWindow), params=batch)
            await session.commit()
    batch.clear()


async def seed(db: Database, subscriptions: int, windows: int) -> int:
    plan = schema.Plan(id="plan_quota", name="quota", currency="EUR", monthly_quota=10_000)
    await seed_subscribers(db, plan, subscriptions, PERIOD_START - timedelta(days=40))
    zeros = {c.name: 0 for c in schema_usage.UsageWindow.__table__.columns if c.name not in KEY_COLUMNS}  # type: ignore[attr-defined]
    rng = random.Random(7)
    minutes = int((NOW - PERIOD_START).total_seconds() // 60)
    step = minutes // windows
    batch: list[dict[str, object]] = []
    rows = 0
    for i in range(subscriptions):
        offset = rng.randrange(step)
        for w in range(windows):
            success = rng.randrange(0, 400)
            batch.append({
                **zeros, "granularity": "minute",
                "window_start": PERIOD_START + timedelta(minutes=offset + w * step),
                "api_id": API_ID, "subscription_id": f"sub_{i:06d}", "application_id": f"app_{i:06d}",
                "plan_id": plan.id, "key_id": "", "success": success, "client_error": rng.randrange(0, 3),
            })  # fmt: skip
            rows += 1
        if len(batch) >= 50_000:
            await _copy(db, "usage_window", batch)
    await _copy(db, "usage_window", batch)
    if db.is_postgres:
        async with db.engine.begin() as conn:
            await conn.execute(text("ANALYZE"))
    return rows


async def _timed(metering: Metering, all_quotas: bool) -> float:
    start = time.perf_counter()
    await metering.round(all_quotas=all_quotas)
    return time.perf_counter() - start


async def run(args: argparse.Namespace) -> None:
    async with bench_database(args.backend, "tw_mbench") as db:
        t0 = time.perf_counter()
        rows = await seed(db, args.subscriptions, args.windows)
        print(f"seeded {args.subscriptions:,} subscriptions, {rows:,} minute rows "
              f"in {time.perf_counter() - t0:.1f} s")  # fmt: skip
        metering = Metering(db, lambda: None, lambda: NOW)
        first = await _timed(metering, True)
        async with db.session() as session:
            alerts = (await session.exec(select(func.count()).select_from(schema_billing.Alert))).one()  # type: ignore[call-overload]
        steady = [await _timed(metering, True) for _ in range(args.rounds)]
        idle = min([await _timed(metering, False) for _ in range(5)])
        print(f"backend {args.backend}: first quota round {first:.3f} s ({alerts[0]:,} alerts raised)")
        print(f"steady quota round {min(steady):.3f} s (best of {len(steady)}: "
              + ", ".join(f"{s:.3f}" for s in steady) + ")")  # fmt: skip
        print(f"round between quota rounds {idle * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscriptions", type=int, default=20_000)
    parser.add_argument("--windows", type=int, default=48, help="minute summaries per subscription")
    parser.add_argument("--rounds", type=int, default=3, help="steady quota rounds timed")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="postgres")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()

"""What the billing benchmarks (bench/invoice_bench.py, bench/metering_bench.py) stand on: a private
database (an SQLite file, or a PostgreSQL schema dropped afterwards), then one plan on one API and
`subscriptions` applications each subscribed to it, inserted in bulk."""

from __future__ import annotations

import random
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

from sqlalchemy import insert, text

from tollway import schema
from tollway.db import Database

API_ID = "api_bench"
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
_CHUNK = 5000


async def seed_subscribers(db: Database, plan: schema.Plan, subscriptions: int, created: datetime) -> None:
    """`plan` on the API `api_bench`, and app_NNNNNN each with sub_NNNNNN on it, ACTIVE since `created`."""
    api = schema.Api(id=API_ID, name="bench", context_path="/bench", upstream_urls=["http://127.0.0.1:9"])
    async with db.session() as session:
        session.add(plan)
        session.add(api)
        await session.flush()
        session.add(schema.ApiPlan(api_id=api.id, plan_id=plan.id))
        await session.commit()
    apps = [{"id": f"app_{i:06d}", "name": f"app-{i}", "owner": "", "description": "", "created_at": created}
            for i in range(subscriptions)]  # fmt: skip
    subs = [
        {"id": f"sub_{i:06d}", "application_id": f"app_{i:06d}", "api_id": api.id, "plan_id": plan.id,
         "state": "ACTIVE", "state_reason": "", "billing_anchor_day": 0, "created_at": created,
         "updated_at": created}
        for i in range(subscriptions)
    ]  # fmt: skip
    async with db.session() as session:
        for i in range(0, subscriptions, _CHUNK):
            await session.exec(insert(schema.Application), params=apps[i : i + _CHUNK])  # type: ignore[call-overload]
            await session.exec(insert(schema.Subscription), params=subs[i : i + _CHUNK])  # type: ignore[call-overload]
        await session.commit()


@asynccontextmanager
async def bench_database(backend: str, prefix: str) -> AsyncIterator[Database]:
    """A fresh schema on `backend` ("sqlite": a temporary file; "postgres": a schema named after
    `prefix` in the local test database), removed with its data afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        if backend == "sqlite":
            db = Database(f"sqlite:///{Path(tmp) / 'bench.db'}")
        else:
            db = Database(POSTGRES_URL, schema_name=f"{prefix}_{random.randrange(10**9)}")
        await db.create_schema()
        try:
            yield db
        finally:
            if db.is_postgres:
                async with db.engine.begin() as conn:
                    await conn.execute(text(f'DROP SCHEMA IF EXISTS "{db.schema_name}" CASCADE'))
            await db.dispose()

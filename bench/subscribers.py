"""What the billing benchmarks (bench/invoice_bench.py, bench/metering_bench.py) seed first: one plan
on one API, and `subscriptions` applications each subscribed to it, inserted in bulk."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert

from tollway import schema
from tollway.db import Database

API_ID = "api_bench"
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

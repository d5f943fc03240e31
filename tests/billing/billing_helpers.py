"""Helpers for billing tests: catalog/store rows and usage windows inserted directly (other components
own those writers), a clock moved by hand, table dumps."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import SQLModel, select

from billing.store import BillingRepository
from tollway import schema, schema_usage
from tollway.db import Database


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def set(self, value: datetime) -> None:
        self.current = value


class Commits:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


class World:
    """Plans, one API offering them, applications and subscriptions, written straight to the schema."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, *rows: SQLModel) -> None:
        async with self.db.session() as session:
            for row in rows:
                session.add(row)
                await session.flush()
            await session.commit()

    async def plan(self, name: str, **fields: Any) -> schema.Plan:
        fields.setdefault("currency", "EUR")
        plan = schema.Plan(id=schema.new_id("plan"), name=name, **fields)
        await self.add(plan)
        return plan

    async def api(self, *plans: schema.Plan) -> schema.Api:
        api = schema.Api(
            id=schema.new_id("api"),
            name=f"api-{secrets.token_hex(3)}",
            version="v1",
            context_path=f"/a/{secrets.token_hex(4)}",
            upstream_urls=["http://127.0.0.1:9"],
            published=True,
        )
        await self.add(
            api, *(schema.ApiPlan(api_id=api.id, plan_id=p.id, position=i) for i, p in enumerate(plans))
        )
        return api

    async def application(self, name: str = "") -> schema.Application:
        app = schema.Application(id=schema.new_id("app"), name=name or f"app-{secrets.token_hex(3)}")
        await self.add(app)
        return app

    async def subscription(
        self,
        app: schema.Application,
        api: schema.Api,
        plan: schema.Plan,
        created: datetime,
        state: str = "ACTIVE",
        anchor: int = 0,
    ) -> schema.Subscription:
        sub = schema.Subscription(
            id=schema.new_id("sub"),
            application_id=app.id,
            api_id=api.id,
            plan_id=plan.id,
            state=state,
            billing_anchor_day=anchor,
            created_at=created,
            updated_at=created,
        )
        await self.add(sub)
        return sub

    async def usage(self, sub: schema.Subscription, at: datetime, plan_id: str = "", **counts: int) -> None:
        """Adds counts to the minute window containing `at` (what usage/ does per request)."""
        window = at.replace(second=0, microsecond=0)
        plan_id = plan_id or sub.plan_id
        async with self.db.session() as session:
            key = ("minute", window, sub.api_id, sub.id, sub.application_id, plan_id, "")
            row = await session.get(schema_usage.UsageWindow, key)
            if row is None:
                row = schema_usage.UsageWindow(
                    granularity="minute",
                    window_start=window,
                    api_id=sub.api_id,
                    subscription_id=sub.id,
                    application_id=sub.application_id,
                    plan_id=plan_id,
                )
            for name, value in counts.items():
                setattr(row, name, getattr(row, name) + value)
            session.add(row)
            await session.commit()


def repository(db: Database, clock: FakeClock, commits: Commits | None = None) -> BillingRepository:
    return BillingRepository(db, commits or Commits(), clock=clock)


async def dump_tables(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    tables: dict[str, list[tuple[Any, ...]]] = {}
    async with db.session() as session:
        for table in SQLModel.metadata.sorted_tables:
            rows = (await session.exec(select(*table.columns))).all()
            tables[table.name] = sorted((tuple(row) for row in rows), key=repr)
    return tables


NOV = (2026, 11)
DEC = (2026, 12)
JAN = (2027, 1)
EPOCH = utc(2026, 10, 1)
ONE_DAY = timedelta(days=1)

"""Helpers for the catalog tests: full database dumps and rows other components own."""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import SQLModel

from tollway import schema
from tollway.db import Database


async def dump(db: Database) -> dict[str, list[str]]:
    """Every row of every table (change revision included), order-independent, for before/after checks."""
    tables: dict[str, list[str]] = {}
    async with db.engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            rows = (await conn.execute(select(table))).mappings().all()
            tables[table.name] = sorted(repr(sorted(dict(row).items())) for row in rows)
    return tables


async def add_subscription(db: Database, api_id: str, plan_id: str, state: str = "ACTIVE") -> str:
    """A subscription as the store component would create it (with its application)."""
    async with db.session() as session:
        application = schema.Application(id=schema.new_id("app"), name="app")
        subscription = schema.Subscription(
            id=schema.new_id("sub"),
            application_id=application.id,
            api_id=api_id,
            plan_id=plan_id,
            state=state,
        )
        session.add(application)
        await session.flush()
        session.add(subscription)
        await session.commit()
        return subscription.id


async def set_subscription_state(db: Database, subscription_id: str, state: str) -> None:
    async with db.session() as session:
        subscription = await session.get(schema.Subscription, subscription_id)
        assert subscription is not None
        subscription.state = state
        session.add(subscription)
        await session.commit()

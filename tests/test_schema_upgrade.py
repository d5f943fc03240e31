"""A database made by an earlier Tollway (fewer columns) is upgraded in place at start, on both backends."""

from __future__ import annotations

from sqlalchemy import text

from tollway import schema
from tollway.db import Database


async def test_missing_columns_are_added_with_defaults(database: Database) -> None:
    async with database.session() as session:
        session.add(schema.Plan(id="plan_old", name="old"))
        await session.commit()
    async with database.engine.begin() as conn:
        for column in ("approval_required", "tiers", "monthly_quota", "description", "updated_at"):
            await conn.execute(text(f'ALTER TABLE plan DROP COLUMN "{column}"'))

    await database.create_schema()  # what every start does

    async with database.session() as session:
        plan = await session.get(schema.Plan, "plan_old")
        assert plan is not None
        assert plan.approval_required is False
        assert plan.tiers == []
        assert plan.monthly_quota == 0
        assert plan.description == ""
        assert plan.updated_at is not None

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


async def test_invoices_from_before_stored_credit_payment_read_as_computed(database: Database) -> None:
    from datetime import UTC, datetime

    from tollway.schema_billing import Invoice

    async with database.engine.begin() as conn:
        for column in ("paid_from_credit", "amount_due"):
            await conn.execute(text(f'ALTER TABLE invoice DROP COLUMN "{column}"'))
    async with database.engine.begin() as conn:
        start, end = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
        await conn.execute(
            text(
                "INSERT INTO invoice (id, state, application_id, currency, period_start, period_end, total,"
                " usage_completeness, completeness_note, created_at, updated_at, void_reason, subtotal,"
                " tax_total, customer) VALUES ('inv_old', 'FINALIZED', 'app', 'USD', :start, :end, '1.00',"
                " 'COMPLETE', '', :start, :start, '', '1.00', '0.00', '{}')"
            ),
            {"start": start, "end": end},
        )

    await database.create_schema()

    async with database.session() as session:
        invoice = await session.get(Invoice, "inv_old")
        assert invoice is not None
        # NULL: computed from the period's burns when read, as before the columns existed.
        assert (invoice.paid_from_credit, invoice.amount_due) == (None, None)

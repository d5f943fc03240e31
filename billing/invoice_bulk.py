"""The invoice run's set-based writes, per dialect: COPY and UPDATE ... FROM unnest(...) on PostgreSQL,
executemany on SQLite; plus the run's allocation tuning (ids drawn in one go, GC paused)."""

from __future__ import annotations

import gc
import json
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String, bindparam, delete, func, insert, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.usage_queries import chunks
from tollway.db import Database
from tollway.schema_billing import BilledSegment, Invoice, InvoiceLine, InvoiceTax

_ID_ALPHABET = "abcdefghijkmnopqrstuvwxyz23456789"


def invoice_ids(count: int) -> Iterator[str]:
    """Ids like schema.new_id("inv"), drawn in one go: a run may create tens of thousands."""
    raw = secrets.token_bytes(12 * count)
    for i in range(count):
        yield "inv_" + "".join(_ID_ALPHABET[b % len(_ID_ALPHABET)] for b in raw[12 * i : 12 * i + 12])


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection during an invoice run: it allocates hundreds of thousands of
    short-lived objects (lines, rows), none in cycles, and collections over them cost ~15% of the run.
    Reference counting still frees them; the collector resumes (if it was on) when the run ends."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class JsonTexts:
    """json.dumps with a cache by identity: most lines share their details dict (SegmentPricer)."""

    def __init__(self) -> None:
        self._texts: dict[int, tuple[Any, str]] = {}

    def __call__(self, value: Any) -> str:
        if not value and isinstance(value, dict):
            return "{}"  # most informational lines: no details
        hit = self._texts.get(id(value))
        if hit is not None and hit[0] is value:
            return hit[1]
        text = json.dumps(value)
        self._texts[id(value)] = (value, text)  # keeps `value` alive, so its id is not reused
        return text


class BulkWriter:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def delete_contents(self, session: AsyncSession, invoice_ids: list[str]) -> None:
        """Deletes the lines and billed segments of invoices, one statement per table on PostgreSQL."""
        if not invoice_ids:
            return
        tables = [InvoiceLine.__table__, BilledSegment.__table__, InvoiceTax.__table__]  # type: ignore[attr-defined]
        if self._db.is_postgres:
            # IN (SELECT unnest(...)) lets the planner hash the ids; `= ANY(array)` probes per element.
            ids = select(func.unnest(bindparam("ids", value=invoice_ids, type_=ARRAY(String))))
            for table in tables:
                await session.exec(delete(table).where(table.c.invoice_id.in_(ids.scalar_subquery())))
            return
        for chunk in chunks(invoice_ids):
            for table in tables:
                await session.exec(delete(table).where(table.c.invoice_id.in_(chunk)))

    async def delete_invoices(self, session: AsyncSession, invoice_ids: list[str]) -> None:
        for chunk in chunks(invoice_ids):
            await session.exec(delete(Invoice.__table__).where(Invoice.__table__.c.id.in_(chunk)))  # type: ignore[attr-defined]

    async def update_invoices(
        self, session: AsyncSession, updates: list[tuple[str, str, str, str, str, str, datetime]]
    ) -> None:
        """(id, total, subtotal, tax_total, usage_completeness, completeness_note, updated_at) of replaced
        drafts: one
        UPDATE ... FROM unnest(...) on PostgreSQL, one executemany elsewhere."""
        if not updates:
            return
        table = Invoice.__table__  # type: ignore[attr-defined]
        names = [
            "id",
            "total",
            "subtotal",
            "tax_total",
            "usage_completeness",
            "completeness_note",
            "updated_at",
        ]
        if self._db.is_postgres and len(updates) >= 100:
            connection = await session.connection()
            raw = await connection.get_raw_connection()
            columns = list(zip(*updates, strict=True))
            await raw.driver_connection.execute(  # type: ignore[union-attr]
                f"UPDATE {table.name} AS i SET total = v.total, subtotal = v.subtotal,"
                " tax_total = v.tax_total, usage_completeness = v.usage_completeness,"
                " completeness_note = v.completeness_note, updated_at = v.updated_at"
                " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],"
                " $7::timestamptz[]) AS v(id, total, subtotal, tax_total, usage_completeness,"
                " completeness_note, updated_at) WHERE i.id = v.id",
                *(list(c) for c in columns),
            )
            return
        statement = (
            update(table)
            .where(table.c.id == bindparam("invoice_id"))
            .values({name: bindparam(f"new_{name}") for name in names[1:]})
        )
        params = [
            {"invoice_id": row[0], **{f"new_{n}": v for n, v in zip(names[1:], row[1:], strict=True)}}
            for row in updates
        ]
        await session.exec(statement, params=params)

    async def insert(
        self,
        session: AsyncSession,
        model: Any,
        columns: list[str],
        rows: Iterable[tuple[Any, ...]],
        count: int,
    ) -> None:
        """`count` rows in the session's transaction: COPY on PostgreSQL (streamed from `rows`), one
        executemany elsewhere."""
        if not count:
            return
        table = model.__table__
        if not self._db.is_postgres or count < 100:
            params = [dict(zip(columns, row, strict=True)) for row in rows]
            await session.exec(insert(table), params=params)
            return
        json_at = [i for i, name in enumerate(columns) if isinstance(table.c[name].type, JSON)]
        records: Iterable[tuple[Any, ...]] = rows
        if json_at:
            encode = JsonTexts()

            def encoded() -> Iterator[tuple[Any, ...]]:
                for row in rows:
                    values = list(row)
                    for i in json_at:
                        values[i] = encode(values[i])
                    yield tuple(values)

            records = encoded()
        connection = await session.connection()
        raw = await connection.get_raw_connection()
        await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
            table.name, records=records, columns=columns, schema_name=self._db.schema_name or None
        )

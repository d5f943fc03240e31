"""Prepaid credit in the database: the ledger, the balance, and the gateway gate it drives.

Every change of a balance is one transaction that (1) adds one ledger entry under a unique key (a
top-up's request id, or a burn's subscription, plan, period and counted requests), (2) moves
`credit_account.balance_minor` by an atomic `balance_minor = balance_minor + x` (its row lock orders
concurrent top-ups and burns, so none is lost), and (3) when the balance crosses zero, flips the
application's `billing_gate` row, which the change log carries to every keymgr replica. A retried
key writes nothing and answers what the first write did.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing import alerts
from billing.credit import (
    APPLICATION,
    BURN,
    CREDIT_EXHAUSTED,
    TOP_UP,
    active_currency,
    from_minor,
    paid_and_due,
    parse_top_up,
    reached,
    refused,
)
from billing.usage_queries import require
from tollway.db import Database
from tollway.errors import InvalidArgument, NotFound
from tollway.events import EventType, emit_event
from tollway.schema import Application, as_utc, utcnow
from tollway.schema_billing import BillingGate, CreditAccount, CreditEntry, Invoice

MAX_ENTRIES = 1000


def insert_ignore(session: AsyncSession, table: Any) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING for the session's dialect."""
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(table)


def utc_instant(value: datetime) -> datetime:
    """`value` as an aware UTC datetime (SQLite reads timestamps back naive)."""
    utc = as_utc(value)
    assert utc is not None
    return utc


def credit_gate_id(application_id: str, currency: str) -> str:
    return f"credit:{application_id}:{currency}"


@dataclass(frozen=True, slots=True)
class Posted:
    entry: CreditEntry
    balance_minor: int
    # False when the key had been posted before (nothing was written now).
    created: bool


async def post_entry(
    session: AsyncSession,
    *,
    key: str,
    application_id: str,
    currency: str,
    kind: str,
    amount_minor: int,
    subscription_id: str = "",
    period_start: datetime | None = None,
    requests: int = 0,
    note: str = "",
) -> CreditEntry:
    """Adds one ledger entry and moves the balance, in the caller's transaction (which commits)."""
    await session.exec(
        insert_ignore(session, CreditAccount.__table__)  # type: ignore[attr-defined]
        .values(application_id=application_id, currency=currency, balance_minor=0, funded_minor=0,
                funding_epoch=0, updated_at=utcnow())
        .on_conflict_do_nothing()
    )  # fmt: skip
    account = CreditAccount.__table__.c  # type: ignore[attr-defined]
    values: dict[str, Any] = {"balance_minor": account.balance_minor + amount_minor, "updated_at": utcnow()}
    if kind == TOP_UP:
        values["funded_minor"] = account.balance_minor + amount_minor
        values["funding_epoch"] = account.funding_epoch + 1
    result = await session.exec(
        update(CreditAccount)
        .where(col(CreditAccount.application_id) == application_id, col(CreditAccount.currency) == currency)
        .values(**values)
        .returning(account.balance_minor, account.funded_minor, account.funding_epoch)
    )
    balance, funded, epoch = result.one()
    entry = CreditEntry(
        key=key, application_id=application_id, currency=currency, kind=kind, amount_minor=amount_minor,
        balance_after_minor=balance, subscription_id=subscription_id, period_start=period_start,
        requests=requests, note=note,
    )  # fmt: skip
    session.add(entry)
    await session.flush()  # a duplicate key fails here, rolling back the balance with it
    await set_credit_gate(session, application_id, currency, balance)
    if kind == BURN and funded > 0:
        used = funded - balance
        for threshold in reached(used, funded):
            await alerts.raise_alert(
                session, APPLICATION, application_id, f"credit-{epoch}", alerts.CREDIT, threshold,
                f"{from_minor(used, currency)} of {from_minor(funded, currency)} {currency} used",
            )  # fmt: skip
    return entry


async def set_credit_gate(session: AsyncSession, application_id: str, currency: str, balance: int) -> None:
    """Writes the gate row only when the standing flips (the change log then carries the flip)."""
    gate_id = credit_gate_id(application_id, currency)
    gate = await session.get(BillingGate, gate_id)
    now_refused = refused(balance)
    if gate is not None and gate.refused == now_refused:
        return
    detail = (
        f"no {currency} credit left" if now_refused else f"{from_minor(balance, currency)} {currency} left"
    )
    if gate is None:
        gate = BillingGate(
            id=gate_id, reason=CREDIT_EXHAUSTED, scope=APPLICATION, target_id=application_id,
            currency=currency, refused=now_refused, detail=detail,
        )  # fmt: skip
    else:
        gate.refused, gate.detail, gate.updated_at = now_refused, detail, utcnow()
    session.add(gate)
    await session.flush()
    if now_refused:
        await emit_event(
            session,
            EventType.CREDIT_EXHAUSTED,
            {
                "application_id": application_id,
                "currency": currency,
                "balance": from_minor(balance, currency),
            },
        )


class CreditStore:
    def __init__(self, db: Database, on_commit: Callable[[], None]) -> None:
        self._db = db
        self._on_commit = on_commit

    async def top_up(
        self, application_id: str, currency: str, amount: str, request_id: str, note: str = ""
    ) -> Posted:
        """Adds `amount` to the application's credit in `currency`. `request_id` makes a retry safe:
        the same id answers the first top-up again (a different amount or account under it is
        INVALID_ARGUMENT)."""
        application_id = require(application_id, "application_id")
        currency = active_currency(currency)
        amount_minor = parse_top_up(amount, currency)
        request_id = require(request_id, "request_id")
        if len(note) > 500:
            raise InvalidArgument("note is too long (500 characters at most)")
        key = f"top-up:{request_id}"
        for attempt in range(2):
            async with self._db.session() as session:
                found = (await session.exec(select(CreditEntry).where(CreditEntry.key == key))).first()
                if found is not None:
                    if (found.application_id, found.currency, found.amount_minor) != (
                        application_id, currency, amount_minor,
                    ):  # fmt: skip
                        raise InvalidArgument(f"request_id {request_id!r} was used for a different top-up")
                    return Posted(found, found.balance_after_minor, created=False)
                application = await session.get(Application, application_id)
                if application is None or application.deleted_at is not None:
                    raise NotFound(f"application {application_id!r} not found")
                try:
                    entry = await post_entry(
                        session, key=key, application_id=application_id, currency=currency, kind=TOP_UP,
                        amount_minor=amount_minor, note=note,
                    )  # fmt: skip
                    await session.commit()
                except IntegrityError:
                    if attempt:
                        raise
                    continue  # a concurrent retry of the same request id won: answer what it wrote
            self._on_commit()
            return Posted(entry, entry.balance_after_minor, created=True)
        raise AssertionError("unreachable")

    async def paid_from_credit(
        self, keys: list[tuple[str, str, datetime]]
    ) -> dict[tuple[str, str, datetime], int]:
        """Minor units burned per (application, currency, period start) of `keys` (one query)."""
        if not keys:
            return {}
        async with self._db.session() as session:
            return await burned_minor(session, keys)

    async def accounts(self, application_id: str, currency: str = "") -> list[CreditAccount]:
        application_id = require(application_id, "application_id")
        async with self._db.session() as session:
            if await session.get(Application, application_id) is None:
                raise NotFound(f"application {application_id!r} not found")
            statement = select(CreditAccount).where(CreditAccount.application_id == application_id)
            if currency:
                statement = statement.where(CreditAccount.currency == active_currency(currency))
            return list((await session.exec(statement.order_by(col(CreditAccount.currency)))).all())

    async def entries(self, application_id: str, currency: str = "", limit: int = 0) -> list[CreditEntry]:
        """The ledger of an application, newest first."""
        application_id = require(application_id, "application_id")
        if limit < 0:
            raise InvalidArgument("limit must not be negative")
        async with self._db.session() as session:
            if await session.get(Application, application_id) is None:
                raise NotFound(f"application {application_id!r} not found")
            statement = select(CreditEntry).where(CreditEntry.application_id == application_id)
            if currency:
                statement = statement.where(CreditEntry.currency == active_currency(currency))
            statement = statement.order_by(col(CreditEntry.id).desc()).limit(
                min(limit or MAX_ENTRIES, MAX_ENTRIES)
            )
            return list((await session.exec(statement)).all())


async def burned_minor(
    session: AsyncSession, keys: list[tuple[str, str, datetime]]
) -> dict[tuple[str, str, datetime], int]:
    """Minor units of credit burned per (application, currency, period start) of `keys`, read in
    `session` (finalization reads it in its own transaction)."""
    found: dict[tuple[str, str, datetime], int] = {}
    wanted = {(app, currency, utc_instant(start)) for app, currency, start in keys}
    statement = (
        select(CreditEntry.application_id, CreditEntry.currency, CreditEntry.period_start,
               func.sum(CreditEntry.amount_minor))
        .where(CreditEntry.kind == BURN, col(CreditEntry.application_id).in_({k[0] for k in keys}))
        .group_by(col(CreditEntry.application_id), col(CreditEntry.currency), col(CreditEntry.period_start))
    )  # fmt: skip
    for app, currency, start, total in (await session.exec(statement)).all():
        if start is None:
            continue
        key = (app, currency, utc_instant(start))
        if key in wanted:
            found[key] = found.get(key, 0) - int(total or 0)
    return found


async def fix_paid_from_credit(session: AsyncSession, invoice: Invoice) -> None:
    """Writes what credit paid of a finalizing invoice and what is due: a finalized invoice never changes,
    even when usage of its period is burned later (that is for the next invoice or a correction)."""
    key = (invoice.application_id, invoice.currency, invoice.period_start)
    paid = (await burned_minor(session, [key])).get(
        (invoice.application_id, invoice.currency, utc_instant(invoice.period_start)), 0
    )
    invoice.paid_from_credit, invoice.amount_due = paid_and_due(invoice.total, invoice.currency, paid)

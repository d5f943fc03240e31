"""Billing accounts (the customer an invoice is addressed to: name, address, email, tax id), the
applications they own, and tax rates set on an account or a plan.

Every write validates everything it was given before it touches the database, so bad input answers
INVALID_ARGUMENT and writes nothing. What an invoice shows of its account: the current details while
it is a draft, the details as they were at finalization once finalized (`customer_snapshot`, written on
the invoice in the finalizing transaction), so a later change of the account leaves it as issued."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.tax import Rate, check_rate_set, parse_rate, rate_text
from billing.usage_queries import chunks
from tollway.db import Database
from tollway.errors import FailedPrecondition, InvalidArgument, NotFound
from tollway.schema import Application, Plan, new_id, utcnow
from tollway.schema_billing import BillingAccount, TaxRate

NAME_MAX = 200
EMAIL_MAX = 254
ADDRESS_MAX = 1_000
ADDRESS_LINES_MAX = 10
TAX_ID_MAX = 50
TAX_NAME_MAX = 100
RATES_PER_SCOPE_MAX = 5
# One @, no spaces, a dot in the domain: catches typos; whether mail arrives is not checked here.
_EMAIL_SHAPE = re.compile(r"^[^\s@]+@[^\s@]+\.[^\s@]+$")
# VAT numbers, EINs, GSTINs...: letters, digits and the separators they are written with.
_TAX_ID_SHAPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 .\-/]*$")
_ACCOUNT_ID_SHAPE = re.compile(r"^acct_[a-z0-9]{1,40}$")


def _line(value: str, field_name: str, limit: int, required: bool = False) -> str:
    value = value.strip()
    if required and not value:
        raise InvalidArgument(f"{field_name} is required")
    if len(value) > limit:
        raise InvalidArgument(f"{field_name} must be at most {limit} characters (got {len(value)})")
    if not value.isprintable():
        raise InvalidArgument(f"{field_name} must be one line without control characters")
    return value


def account_name(value: str) -> str:
    return _line(value, "name", NAME_MAX, required=True)


def account_email(value: str) -> str:
    """Trimmed and lower-cased; empty is allowed (no invoice email)."""
    value = _line(value, "email", EMAIL_MAX).lower()
    if value and not _EMAIL_SHAPE.match(value):
        raise InvalidArgument(f"email must be an address such as billing@example.com, got {value!r}")
    return value


def account_address(value: str) -> str:
    """A postal address: several lines (\\n between them), no other control characters."""
    lines = [part.strip() for part in value.replace("\r\n", "\n").strip().split("\n")]
    if len(lines) > ADDRESS_LINES_MAX:
        raise InvalidArgument(f"address must have at most {ADDRESS_LINES_MAX} lines")
    for part in lines:
        if not part.isprintable():
            raise InvalidArgument("address must not contain control characters other than line breaks")
    text = "\n".join(lines)
    if len(text) > ADDRESS_MAX:
        raise InvalidArgument(f"address must be at most {ADDRESS_MAX} characters (got {len(text)})")
    return text


def account_tax_id(value: str) -> str:
    value = _line(value, "tax_id", TAX_ID_MAX)
    if value and not _TAX_ID_SHAPE.match(value):
        raise InvalidArgument(
            f"tax_id may hold letters, digits, spaces and . - / (such as DE123456789), got {value!r}"
        )
    return value


def account_ref(value: str, field_name: str = "account") -> str:
    value = value.strip()
    if not value:
        raise InvalidArgument(f"{field_name} is required")
    if not _ACCOUNT_ID_SHAPE.match(value):
        raise InvalidArgument(
            f"{field_name} must be a billing account id such as acct_..., got {value[:60]!r}"
        )
    return value


@dataclass(frozen=True, slots=True)
class AccountChanges:
    """An update: None leaves a field as it is."""

    name: str | None = None
    email: str | None = None
    address: str | None = None
    tax_id: str | None = None

    def validated(self) -> dict[str, str]:
        values: dict[str, str] = {}
        if self.name is not None:
            values["name"] = account_name(self.name)
        if self.email is not None:
            values["email"] = account_email(self.email)
        if self.address is not None:
            values["address"] = account_address(self.address)
        if self.tax_id is not None:
            values["tax_id"] = account_tax_id(self.tax_id)
        return values


@dataclass
class AccountView:
    account: BillingAccount
    application_ids: list[str] = field(default_factory=list)
    tax_rates: list[TaxRate] = field(default_factory=list)


def customer_details(account: BillingAccount) -> dict[str, Any]:
    """What an invoice carries of its account."""
    return {
        "billing_account_id": account.id,
        "name": account.name,
        "email": account.email,
        "address": account.address,
        "tax_id": account.tax_id,
    }


def rate_of(row: TaxRate) -> Rate:
    return Rate(row.id, row.name, parse_rate(row.rate), row.inclusive)


@dataclass
class TaxContext:
    """What an invoice run needs to tax its drafts: each application's account, the rates of accounts
    and plans. Empty (no rate anywhere): nothing is taxed and nothing more is read."""

    account_of: dict[str, str] = field(default_factory=dict)
    account_rates: dict[str, list[Rate]] = field(default_factory=dict)
    plan_rates: dict[str, list[Rate]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.account_rates and not self.plan_rates

    def rates_of_application(self, application_id: str) -> list[Rate]:
        return self.account_rates.get(self.account_of.get(application_id, ""), [])


async def tax_context(session: AsyncSession, application_ids: Iterable[str]) -> TaxContext:
    context = TaxContext()
    rows = (await session.exec(select(TaxRate).order_by(col(TaxRate.created_at), col(TaxRate.id)))).all()
    if not rows:
        return context
    for row in rows:
        if row.plan_id:
            context.plan_rates.setdefault(row.plan_id, []).append(rate_of(row))
        else:
            context.account_rates.setdefault(row.billing_account_id, []).append(rate_of(row))
    for chunk in chunks(sorted(set(application_ids))):
        statement = select(Application.id, Application.billing_account_id).where(
            col(Application.id).in_(chunk)
        )
        for app_id, account_id in (await session.exec(statement)).all():
            if account_id:
                context.account_of[app_id] = account_id
    return context


async def current_customers(
    session: AsyncSession, application_ids: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """application id → its account's current details (applications without an account are left out)."""
    result: dict[str, dict[str, Any]] = {}
    for chunk in chunks(sorted(set(application_ids))):
        statement = (
            select(Application.id, BillingAccount)
            .join(BillingAccount, col(BillingAccount.id) == col(Application.billing_account_id))
            .where(col(Application.id).in_(chunk))
        )
        for app_id, account in (await session.exec(statement)).all():
            result[app_id] = customer_details(account)
    return result


class AccountStore:
    def __init__(
        self, db: Database, on_commit: Callable[[], None], clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._db = db
        self._on_commit = on_commit
        self._clock = clock

    async def _commit(self, session: AsyncSession) -> None:
        await session.commit()
        self._on_commit()

    async def _view(self, session: AsyncSession, account: BillingAccount) -> AccountView:
        apps = select(Application.id).where(
            Application.billing_account_id == account.id, col(Application.deleted_at).is_(None)
        )
        rates = select(TaxRate).where(TaxRate.billing_account_id == account.id)
        return AccountView(
            account,
            sorted((await session.exec(apps)).all()),
            list((await session.exec(rates.order_by(col(TaxRate.created_at)))).all()),
        )

    async def _account(self, session: AsyncSession, account_id: str) -> BillingAccount:
        account = await session.get(BillingAccount, account_ref(account_id))
        if account is None:
            raise NotFound(f"billing account {account_id!r} not found")
        return account

    async def create(self, name: str, email: str = "", address: str = "", tax_id: str = "") -> AccountView:
        values = AccountChanges(name, email, address, tax_id).validated()
        now = self._clock()
        account = BillingAccount(id=new_id("acct"), created_at=now, updated_at=now, **values)
        async with self._db.session() as session:
            session.add(account)
            await session.flush()
            view = await self._view(session, account)
            await self._commit(session)
        return view

    async def get(self, account_id: str) -> AccountView:
        async with self._db.session() as session:
            return await self._view(session, await self._account(session, account_id))

    async def list_accounts(self) -> list[AccountView]:
        async with self._db.session() as session:
            rows = (await session.exec(select(BillingAccount).order_by(col(BillingAccount.name)))).all()
            return [await self._view(session, row) for row in rows]

    async def update(self, account_id: str, changes: AccountChanges) -> AccountView:
        values = changes.validated()
        if not values:
            raise InvalidArgument("nothing to update: give at least one of name, email, address, tax_id")
        async with self._db.session() as session:
            account = await self._account(session, account_id)
            for name, value in values.items():
                setattr(account, name, value)
            account.updated_at = self._clock()
            session.add(account)
            await session.flush()
            view = await self._view(session, account)
            await self._commit(session)
        return view

    async def delete(self, account_id: str) -> None:
        """Refused while applications point to it; its tax rates go with it. Finalized invoices keep
        the details they were issued with."""
        async with self._db.session() as session:
            account = await self._account(session, account_id)
            view = await self._view(session, account)
            if view.application_ids:
                owned = ", ".join(view.application_ids[:5])
                raise FailedPrecondition(
                    f"billing account {account.id} still owns applications {owned}:"
                    " move them to another account (or to none) first"
                )
            for rate in view.tax_rates:
                await session.delete(rate)
            await session.delete(account)
            await self._commit(session)

    async def assign_application(self, application_id: str, account_id: str) -> str:
        """Sets (or, with an empty `account_id`, clears) the application's billing account. Drafts follow
        on their next read; finalized invoices keep what they were issued with."""
        application_id = _line(application_id, "application", 100, required=True)
        target = account_ref(account_id) if account_id.strip() else None
        async with self._db.session() as session:
            app = await session.get(Application, application_id)
            if app is None or app.deleted_at is not None:
                raise NotFound(f"application {application_id!r} not found")
            if target is not None:
                await self._account(session, target)
            await session.exec(
                update(Application)
                .where(col(Application.id) == application_id)
                .values(billing_account_id=target)
            )
            await self._commit(session)
        return target or ""

    # --- tax rates ------------------------------------------------------------------------------------

    async def add_tax_rate(
        self, name: str, rate: str, inclusive: bool, account_id: str = "", plan_id: str = ""
    ) -> TaxRate:
        label = _line(name, "name", TAX_NAME_MAX, required=True)
        percent = parse_rate(rate)
        if bool(account_id.strip()) == bool(plan_id.strip()):
            raise InvalidArgument("give exactly one of account and plan: a tax rate is set on one of them")
        account_id = account_ref(account_id) if account_id.strip() else ""
        plan_id = _line(plan_id, "plan", 100)
        async with self._db.session() as session:
            if account_id:
                await self._account(session, account_id)
                scope = select(TaxRate).where(TaxRate.billing_account_id == account_id)
                where = f"billing account {account_id}"
            else:
                if await session.get(Plan, plan_id) is None:
                    raise NotFound(f"plan {plan_id!r} not found")
                scope = select(TaxRate).where(TaxRate.plan_id == plan_id)
                where = f"plan {plan_id}"
            existing = list((await session.exec(scope)).all())
            if len(existing) >= RATES_PER_SCOPE_MAX:
                raise FailedPrecondition(f"{where} has {RATES_PER_SCOPE_MAX} tax rates already")
            row = TaxRate(
                id=new_id("tax"), billing_account_id=account_id, plan_id=plan_id, name=label,
                rate=rate_text(percent), inclusive=inclusive, created_at=self._clock(),
            )  # fmt: skip
            check_rate_set([*(rate_of(r) for r in existing), rate_of(row)])
            session.add(row)
            await session.flush()
            await session.refresh(row)
            await self._commit(session)
        return row

    async def list_tax_rates(self, account_id: str = "", plan_id: str = "") -> list[TaxRate]:
        statement = select(TaxRate)
        if account_id.strip():
            statement = statement.where(TaxRate.billing_account_id == account_ref(account_id))
        if plan_id.strip():
            statement = statement.where(TaxRate.plan_id == plan_id.strip())
        async with self._db.session() as session:
            return list(
                (await session.exec(statement.order_by(col(TaxRate.created_at), col(TaxRate.id)))).all()
            )

    async def delete_tax_rate(self, tax_rate_id: str) -> None:
        tax_rate_id = _line(tax_rate_id, "tax_rate", 100, required=True)
        async with self._db.session() as session:
            row = await session.get(TaxRate, tax_rate_id)
            if row is None:
                raise NotFound(f"tax rate {tax_rate_id!r} not found")
            await session.delete(row)
            await self._commit(session)

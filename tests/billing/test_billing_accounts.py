"""Billing accounts and taxes through invoice runs (SQLite and PostgreSQL): a mixed invoice (a plan's
inclusive VAT beside the account's exclusive rate), customer-readable lines, the account's details as
finalized, exports; bad input changes nothing; BillingAccountService through a real gRPC server with
the request guard in front."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator

import grpc
import pytest

from billing.account_servicer import BillingAccountServicer
from billing.accounts import AccountChanges
from billing.credit_notes import CreditRequest
from billing.periods import Period
from billing.store import BillingRepository
from tests.billing.billing_helpers import DEC, EPOCH, NOV, FakeClock, World, dump_tables, repository, utc
from tests.support import grpc_server
from tollway.billing.v1 import accounts_pb2 as pb
from tollway.billing.v1 import accounts_pb2_grpc
from tollway.db import Database
from tollway.errors import FailedPrecondition, InvalidArgument, NotFound
from tollway.request_guard import RequestGuardInterceptor

ADDRESS = "Hauptstr. 1\n10115 Berlin\nGermany"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(utc(2026, 12, 5))


@pytest.fixture
def billing(database: Database, clock: FakeClock) -> BillingRepository:
    return repository(database, clock)


@pytest.fixture
def world(database: Database) -> World:
    return World(database)


async def mixed_world(billing: BillingRepository, world: World) -> tuple[str, str]:
    """An account with an exclusive 8.875% rate, owning an application subscribed to plan "eu" (VAT
    20% inclusive on the plan) and plan "addon" (no rate of its own: the account's applies)."""
    account = await billing.accounts.create("Acme GmbH", "Billing@Acme.example", ADDRESS, "DE123456789")
    app = await world.application("acme")
    await billing.accounts.assign_application(app.id, account.account.id)
    eu = await world.plan("eu", recurring_fee="49.00", unit_price="0.001", included_requests=100_000)
    addon = await world.plan("addon", recurring_fee="10.00")
    await billing.accounts.add_tax_rate("VAT 20%", "20", True, plan_id=eu.id)
    await billing.accounts.add_tax_rate("Sales tax 8.875%", "8.875", False, account_id=account.account.id)
    sub = await world.subscription(app, await world.api(eu), eu, EPOCH)
    await world.subscription(app, await world.api(addon), addon, EPOCH)
    await world.usage(sub, utc(2026, 11, 3), success=123_456)
    return account.account.id, app.id


async def test_mixed_invoice_taxes_lines_and_snapshot(
    billing: BillingRepository, world: World, clock: FakeClock
) -> None:
    account_id, app_id = await mixed_world(billing, world)
    [draft] = await billing.generate(month=NOV)
    charged = [(line.kind, line.description, line.amount) for line in draft.lines if line.amount != "0.00"]
    # 123,456 requests, 100,000 included: 23,456 x 0.001 = 23.456 → 23.46.
    assert sorted(charged) == [
        ("FEE", "Recurring fee, Nov 1-30", "10.00"),
        ("FEE", "Recurring fee, Nov 1-30", "49.00"),
        ("USAGE", "Requests above 100,000 included: 23,456 \u00d7 0.001 EUR", "23.46"),
    ]
    included = next(line for line in draft.lines if line.kind == "INCLUDED")
    assert included.description == "Included requests: 100,000 of 100,000"
    # VAT (inclusive): 49.00 / 1.2 = 40.83 (8.17), 23.46 / 1.2 = 19.55 (3.91): 60.38 taxed 12.08.
    # Sales tax (exclusive): 10.00 x 8.875% = 0.8875 → 0.89, added.
    taxes = {t.name: (t.inclusive, t.taxable, t.amount) for t in draft.taxes}
    assert taxes == {"VAT 20%": (True, "60.38", "12.08"), "Sales tax 8.875%": (False, "10.00", "0.89")}
    inv = draft.invoice
    # 49.00 + 23.46 + 10.00 = 82.46; taxes 12.08 + 0.89 = 12.97; due 82.46 + 0.89 = 83.35.
    assert (inv.subtotal, inv.tax_total, inv.total) == ("82.46", "12.97", "83.35")
    fee = next(line for line in draft.lines if line.amount == "49.00")
    assert fee.details["taxes"] == [
        {"tax_rate_id": fee.details["taxes"][0]["tax_rate_id"], "name": "VAT 20%", "rate": "20",
         "inclusive": True, "net": "40.83", "tax": "8.17"}
    ]  # fmt: skip
    # A draft names the account as it is now.
    assert draft.customer["name"] == "Acme GmbH" and draft.customer["email"] == "billing@acme.example"
    await billing.accounts.update(account_id, AccountChanges(email="ap@acme.example"))
    assert (await billing.get_invoice(inv.id)).customer["email"] == "ap@acme.example"

    final = await billing.finalize(inv.id)
    assert final.customer == {
        "billing_account_id": account_id, "name": "Acme GmbH", "email": "ap@acme.example",
        "address": ADDRESS, "tax_id": "DE123456789",
    }  # fmt: skip
    assert (final.invoice.subtotal, final.invoice.tax_total, final.invoice.total) == (
        "82.46",
        "12.97",
        "83.35",
    )

    # Credit notes tax what they credit with the rates of the credited lines, rounded per credited line:
    # 5.00 of the add-on fee → 5.00 x 8.875% = 0.44375 → 0.44, total 5.44.
    addon_fee = next(line for line in final.lines if line.amount == "10.00")
    partial = await billing.issue_credit_note(inv.id, "goodwill", [CreditRequest(addon_fee.position, "5.00")])
    assert (partial.note.subtotal, partial.note.tax_total, partial.note.total) == ("5.00", "0.44", "5.44")
    # The rest: 49.00 + 23.46 + 5.00 = 77.46; VAT inside (8.17 + 3.91 = 12.08), sales 0.44 on top.
    rest = await billing.issue_credit_note(inv.id, "refund", [])
    assert (rest.note.subtotal, rest.note.total) == ("77.46", "77.90")
    assert {t["name"]: t["amount"] for t in rest.note.taxes} == {
        "VAT 20%": "12.08",
        "Sales tax 8.875%": "0.44",
    }

    # Later changes of the account and its rates leave the finalized invoice as issued.
    await billing.accounts.update(
        account_id, AccountChanges(name="Acme AG", address="Elsewhere 2", tax_id="X1")
    )
    await billing.accounts.add_tax_rate("City tax 1%", "1", False, account_id=account_id)
    again = await billing.get_invoice(inv.id)
    assert again.customer == final.customer
    assert [(t.name, t.amount) for t in again.taxes] == [(t.name, t.amount) for t in final.taxes]
    assert again.invoice.total == "83.35"
    # ...while the next period's draft shows them: 10.00 x 1% = 0.10 more.
    [december] = [v for v in await billing.generate(month=DEC) if v.invoice.application_id == app_id]
    assert december.customer["name"] == "Acme AG"
    assert {t.name: t.amount for t in december.taxes}["City tax 1%"] == "0.10"

    # Exports carry the customer and the tax lines.
    period = Period(utc(2026, 11, 1), utc(2026, 12, 1))
    rows = list(csv.DictReader(io.StringIO(await billing.export(period, "csv"))))
    tax_rows = [row for row in rows if row["document"] == "tax"]
    assert {(r["description"], r["taxable"], r["amount"], r["tax_inclusive"]) for r in tax_rows} == {
        ("VAT 20%", "60.38", "12.08", "true"),
        ("Sales tax 8.875%", "10.00", "0.89", "false"),
    }
    assert {r["customer_name"] for r in rows} == {"Acme GmbH"}
    assert {r["customer_tax_id"] for r in rows} == {"DE123456789"}
    fee_row = next(r for r in rows if r["kind"] == "FEE" and r["amount"] == "49.00")
    assert (fee_row["taxable"], fee_row["tax_amount"]) == ("40.83", "8.17")
    assert json.loads(fee_row["details"])["stretches"] == [
        ["2026-11-01T00:00:00+00:00", "2026-12-01T00:00:00+00:00"]
    ]
    credit_tax_rows = [row for row in rows if row["document"] == "credit_note_tax"]
    assert {(r["credit_note_number"], r["description"], r["amount"]) for r in credit_tax_rows} == {
        (partial.note.number, "Sales tax 8.875%", "0.44"),
        (rest.note.number, "Sales tax 8.875%", "0.44"),
        (rest.note.number, "VAT 20%", "12.08"),
    }
    document, *notes = [json.loads(line) for line in (await billing.export(period, "jsonl")).splitlines()]
    assert document["customer"]["address"] == ADDRESS
    assert document["total"] == "83.35" and len(document["taxes"]) == 2
    assert [n["total"] for n in notes] == ["5.44", "77.90"]


async def test_invoice_without_account_is_untaxed_and_names_no_customer(
    billing: BillingRepository, world: World
) -> None:
    plan = await world.plan("basic", recurring_fee="30.00")
    sub = await world.subscription(await world.application(), await world.api(plan), plan, utc(2026, 11, 16))
    [view] = await billing.generate(month=NOV)
    assert view.invoice.application_id == sub.application_id
    assert view.customer == {} and view.taxes == []
    assert (view.invoice.subtotal, view.invoice.tax_total, view.invoice.total) == ("15.00", "0.00", "15.00")
    assert view.lines[0].description == "Recurring fee, Nov 16-30 (prorated)"
    final = await billing.finalize(view.invoice.id)
    assert final.customer == {} and final.invoice.total == "15.00"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda a: a.create("", "x@example.com"), "name is required"),
        (lambda a: a.create("Acme\x07", "x@example.com"), "control characters"),
        (lambda a: a.create("A" * 201), "at most 200"),
        (lambda a: a.create("Acme", "not-an-email"), "email must be an address"),
        (lambda a: a.create("Acme", "a@b.example", "line\x00"), "control characters"),
        (lambda a: a.create("Acme", "a@b.example", "\n".join("x" * 11)), "at most 10 lines"),
        (lambda a: a.create("Acme", "a@b.example", "", "DE 123;DROP"), "tax_id may hold"),
        (lambda a: a.add_tax_rate("VAT", "-20", False, account_id="acct_x"), "percentage"),
        (lambda a: a.add_tax_rate("VAT", "20", False), "exactly one of account and plan"),
        (lambda a: a.add_tax_rate("", "20", False, account_id="acct_x"), "name is required"),
        (lambda a: a.add_tax_rate("VAT", "20", False, account_id="nope"), "billing account id"),
    ],
)
async def test_bad_input_is_refused_and_writes_nothing(
    billing: BillingRepository, database: Database, call: object, message: str
) -> None:
    before = await dump_tables(database)
    with pytest.raises(InvalidArgument, match=message):
        await call(billing.accounts)  # type: ignore[operator]
    assert await dump_tables(database) == before


async def test_account_rules(billing: BillingRepository, world: World, database: Database) -> None:
    account = (await billing.accounts.create("Acme")).account
    app = await world.application()
    with pytest.raises(NotFound):
        await billing.accounts.assign_application(app.id, "acct_missing")
    with pytest.raises(NotFound):
        await billing.accounts.assign_application("app_missing", account.id)
    await billing.accounts.assign_application(app.id, account.id)
    assert (await billing.accounts.get(account.id)).application_ids == [app.id]
    with pytest.raises(FailedPrecondition, match="still owns applications"):
        await billing.accounts.delete(account.id)
    await billing.accounts.add_tax_rate("VAT 19%", "19", True, account_id=account.id)
    before = await dump_tables(database)
    with pytest.raises(InvalidArgument, match="at most one inclusive"):
        await billing.accounts.add_tax_rate("VAT 7%", "7", True, account_id=account.id)
    with pytest.raises(InvalidArgument, match="nothing to update"):
        await billing.accounts.update(account.id, AccountChanges())
    assert await dump_tables(database) == before
    await billing.accounts.assign_application(app.id, "")
    await billing.accounts.delete(account.id)
    assert await billing.accounts.list_tax_rates() == []


@pytest.fixture
async def stub(database: Database) -> AsyncIterator[accounts_pb2_grpc.BillingAccountServiceStub]:
    servicer = BillingAccountServicer(repository(database, FakeClock(utc(2026, 12, 3))).accounts)
    registration = lambda server: accounts_pb2_grpc.add_BillingAccountServiceServicer_to_server(  # noqa: E731
        servicer, server
    )
    async with grpc_server(registration, interceptors=(RequestGuardInterceptor(validate=True),)) as channel:
        yield accounts_pb2_grpc.BillingAccountServiceStub(channel)


async def test_billing_account_service(
    stub: accounts_pb2_grpc.BillingAccountServiceStub, world: World, database: Database
) -> None:
    created = (
        await stub.CreateBillingAccount(
            pb.CreateBillingAccountRequest(
                name="Acme", email="a@acme.example", address=ADDRESS, tax_id="GB123"
            )
        )
    ).billing_account
    assert created.id.startswith("acct_") and created.address == ADDRESS
    app = await world.application()
    await stub.SetApplicationBillingAccount(
        pb.SetApplicationBillingAccountRequest(application_id=app.id, billing_account_id=created.id)
    )
    rate = (
        await stub.CreateTaxRate(
            pb.CreateTaxRateRequest(
                billing_account_id=created.id, name="VAT 20%", rate="20.0", inclusive=True
            )
        )
    ).tax_rate
    assert rate.rate == "20" and rate.inclusive
    updated = (
        await stub.UpdateBillingAccount(pb.UpdateBillingAccountRequest(id=created.id, name="Acme Ltd"))
    ).billing_account
    assert (updated.name, updated.email, list(updated.application_ids)) == (
        "Acme Ltd",
        "a@acme.example",
        [app.id],
    )
    assert [r.id for r in updated.tax_rates] == [rate.id]

    before = await dump_tables(database)
    for request, expected in [
        (pb.CreateBillingAccountRequest(name="X", email="nope"), "email must be an address"),
        (pb.CreateBillingAccountRequest(name="X\x1b[31m"), "control characters"),
        (pb.CreateBillingAccountRequest(name="X", address="a\x00b"), "control characters"),
        (pb.UpdateBillingAccountRequest(id=created.id, email="a@@b"), "email must be an address"),
        (pb.CreateTaxRateRequest(billing_account_id=created.id, name="T", rate="abc"), "percentage"),
    ]:
        method = stub.UpdateBillingAccount if isinstance(request, pb.UpdateBillingAccountRequest) else (
            stub.CreateTaxRate if isinstance(request, pb.CreateTaxRateRequest) else stub.CreateBillingAccount
        )  # fmt: skip
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await method(request)  # type: ignore[operator]
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert expected in (info.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.GetBillingAccount(pb.GetBillingAccountRequest(id="acct_missing"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as owned:
        await stub.DeleteBillingAccount(pb.DeleteBillingAccountRequest(id=created.id))
    assert owned.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert await dump_tables(database) == before

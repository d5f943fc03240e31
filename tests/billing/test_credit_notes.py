"""Credit notes (SQLite and PostgreSQL): a finalized invoice is corrected, partly or fully, by credit notes
numbered without gaps in their own sequence; they never change, the invoice never changes, and exports
carry them. Bad requests are refused with a clear status and write nothing."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator
from decimal import Decimal

import grpc
import pytest

from billing.credit_notes import CreditRequest, credited_amounts
from billing.periods import period_starting_in
from billing.servicer import BillingServicer
from billing.store import BillingRepository
from tests.billing.billing_helpers import EPOCH, NOV, FakeClock, World, dump_tables, repository, utc
from tests.support import grpc_server
from tollway import schema_billing
from tollway.billing.v1 import billing_pb2 as pb
from tollway.billing.v1 import billing_pb2_grpc
from tollway.db import Database
from tollway.errors import FailedPrecondition, InvalidArgument, NotFound


@pytest.fixture
def billing(database: Database) -> BillingRepository:
    return repository(database, FakeClock(utc(2026, 12, 5)))


@pytest.fixture
def world(database: Database) -> World:
    return World(database)


async def finalized_invoice(billing: BillingRepository, world: World, fee: str = "5.00") -> str:
    """A finalized November invoice: FEE (position 0) `fee`, USAGE (position 1) 4 x 0.25 = 1.00."""
    plan = await world.plan(f"unit-{fee}", recurring_fee=fee, unit_price="0.25", included_requests=0)
    api = await world.api(plan)
    sub = await world.subscription(await world.application(), api, plan, EPOCH)
    await world.usage(sub, utc(2026, 11, 2), success=4, throttled=2)
    views = await billing.generate(month=NOV, subscription_id=sub.id)
    final = await billing.finalize(views[0].invoice.id)
    assert [line.kind for line in final.lines] == ["FEE", "USAGE", "INFO_THROTTLED"]
    assert final.invoice.number is not None
    return final.invoice.number


async def test_partial_then_full_credit(billing: BillingRepository, world: World, database: Database) -> None:
    number = await finalized_invoice(billing, world)
    before = await billing.get_invoice(number)
    partial = await billing.issue_credit_note(number, "goodwill", [CreditRequest(0, "2.00")])
    assert (partial.note.number, partial.note.total, partial.invoice_number) == ("CN-000001", "2.00", number)
    assert [(line.invoice_line, line.kind, line.amount) for line in partial.lines] == [(0, "FEE", "2.00")]
    # The rest, in full: what is left of the fee and all of the usage line; never the informational one.
    full = await billing.issue_credit_note(number, "service outage", [])
    assert full.note.number == "CN-000002"
    assert [(line.invoice_line, line.amount) for line in full.lines] == [(0, "3.00"), (1, "1.00")]
    assert full.note.total == "4.00"
    with pytest.raises(FailedPrecondition, match="nothing is left to credit"):
        await billing.issue_credit_note(number, "again", [])
    # The invoice never changes; a corrected invoice is not voided.
    after = await billing.get_invoice(number)
    assert (after.invoice, after.lines) == (before.invoice, before.lines)
    with pytest.raises(FailedPrecondition, match="corrected by credit note CN-000001"):
        await billing.void(number, "oops")
    # Issued credit notes stay exactly as they were.
    assert (await billing.get_credit_note("CN-000001")).lines == partial.lines
    assert [v.note.number for v in await billing.list_credit_notes(number)] == ["CN-000001", "CN-000002"]
    async with database.session() as session:
        rows = await session.get(schema_billing.CreditNote, partial.note.id)
        assert rows is not None and rows.total == "2.00" and rows.reason == "goodwill"


async def test_numbers_have_no_gaps_even_after_refusals(
    billing: BillingRepository, world: World, database: Database
) -> None:
    first = await finalized_invoice(billing, world, "5.00")
    second = await finalized_invoice(billing, world, "7.00")
    numbers = [(await billing.issue_credit_note(first, "a", [CreditRequest(1, "0.50")])).note.number]
    before = await dump_tables(database)
    with pytest.raises(InvalidArgument, match="exceeds what is left"):
        await billing.issue_credit_note(first, "b", [CreditRequest(1, "0.51")])
    assert await dump_tables(database) == before  # the refused note took no number
    numbers.append((await billing.issue_credit_note(second, "c", [])).note.number)
    numbers.append((await billing.issue_credit_note(first, "d", [CreditRequest(1)])).note.number)
    assert numbers == ["CN-000001", "CN-000002", "CN-000003"]


BAD = [
    ([CreditRequest(0, "-1.00")], InvalidArgument, "must not be negative"),
    ([CreditRequest(0, "0")], InvalidArgument, "must be more than zero"),
    ([CreditRequest(0, "1.001")], InvalidArgument, "more decimals than EUR allows"),
    ([CreditRequest(0, "abc")], InvalidArgument, "decimal amount"),
    ([CreditRequest(2)], InvalidArgument, "no charged line 2"),  # informational: nothing was charged
    ([CreditRequest(9)], InvalidArgument, "no charged line 9"),
    ([CreditRequest(0, "1"), CreditRequest(0, "1")], InvalidArgument, "named twice"),
    ([CreditRequest(0, "5.01")], InvalidArgument, "exceeds what is left to credit on line 0 (5.00)"),
]


@pytest.mark.parametrize(("lines", "error", "message"), BAD)
async def test_bad_credit_requests_change_nothing(
    billing: BillingRepository, world: World, database: Database, lines: list[CreditRequest],
    error: type[Exception], message: str,
) -> None:  # fmt: skip
    number = await finalized_invoice(billing, world)
    before = await dump_tables(database)
    with pytest.raises(error, match=re.escape(message)):
        await billing.issue_credit_note(number, "why", lines)
    with pytest.raises(InvalidArgument, match="reason is required"):
        await billing.issue_credit_note(number, "  ", [])
    with pytest.raises(NotFound):
        await billing.issue_credit_note("INV-999999", "why", [])
    assert await dump_tables(database) == before


async def test_only_finalized_invoices_are_credited(billing: BillingRepository, world: World) -> None:
    plan = await world.plan("draft-only", recurring_fee="1.00")
    api = await world.api(plan)
    await world.subscription(await world.application(), api, plan, EPOCH)
    [draft] = await billing.generate(month=NOV)
    with pytest.raises(FailedPrecondition, match="is DRAFT: only a finalized invoice"):
        await billing.issue_credit_note(draft.invoice.id, "why", [])


async def test_a_replayed_request_id_returns_the_same_note(billing: BillingRepository, world: World) -> None:
    number = await finalized_invoice(billing, world)
    once = await billing.issue_credit_note(number, "why", [CreditRequest(0, "1.00")], request_id="r-1")
    again = await billing.issue_credit_note(number, "why", [CreditRequest(0, "1.00")], request_id="r-1")
    assert again.note.number == once.note.number == "CN-000001"
    assert len(await billing.list_credit_notes(number)) == 1


async def test_exports_carry_credit_notes(billing: BillingRepository, world: World) -> None:
    number = await finalized_invoice(billing, world)
    await billing.issue_credit_note(number, "goodwill", [CreditRequest(0, "2.00")])
    period = period_starting_in(*NOV, 0)
    rows = list(csv.DictReader(io.StringIO(await billing.export(period, "csv"))))
    assert [(r["document"], r["kind"], r["amount"]) for r in rows] == [
        ("invoice", "FEE", "5.00"), ("invoice", "USAGE", "1.00"), ("invoice", "INFO_THROTTLED", "0.00"),
        ("credit_note", "FEE", "2.00"),
    ]  # fmt: skip
    credit = rows[-1]
    assert (credit["credit_note_number"], credit["credits_line"], credit["invoice_number"]) == (
        "CN-000001",
        "0",
        number,
    )
    documents = [json.loads(line) for line in (await billing.export(period, "jsonl")).splitlines()]
    assert [(d["document"], d["number"]) for d in documents] == [
        ("invoice", number),
        ("credit_note", "CN-000001"),
    ]
    assert documents[1]["invoice_number"] == number and Decimal(documents[1]["total"]) == 2


def test_a_full_credit_skips_lines_with_nothing_left() -> None:
    lines = [
        schema_billing.InvoiceLine(invoice_id="i", position=0, kind="FEE", amount="5.00"),
        schema_billing.InvoiceLine(invoice_id="i", position=1, kind="ADJUSTMENT", amount="-1.00"),
        schema_billing.InvoiceLine(invoice_id="i", position=2, kind="INCLUDED", amount="0.00"),
    ]
    [(line, amount)] = credited_amounts(lines, {0: Decimal("4.00")}, [], "EUR")
    assert (line.position, amount) == (0, Decimal("1.00"))


@pytest.fixture
async def stub(database: Database) -> AsyncIterator[billing_pb2_grpc.BillingServiceStub]:
    servicer = BillingServicer(repository(database, FakeClock(utc(2026, 12, 5))))
    registration = lambda server: billing_pb2_grpc.add_BillingServiceServicer_to_server(servicer, server)  # noqa: E731
    async with grpc_server(registration) as channel:
        yield billing_pb2_grpc.BillingServiceStub(channel)


async def test_credit_notes_over_grpc(
    stub: billing_pb2_grpc.BillingServiceStub, billing: BillingRepository, world: World, database: Database
) -> None:
    number = await finalized_invoice(billing, world)
    request = pb.IssueCreditNoteRequest(
        invoice_id=number, reason="goodwill", lines=[pb.CreditLine(invoice_line=1, amount="0.25")]
    )
    note = (await stub.IssueCreditNote(request)).credit_note
    assert (note.number, note.total, note.invoice_number, note.lines[0].kind) == (
        "CN-000001",
        "0.25",
        number,
        "USAGE",
    )
    assert (await stub.GetCreditNote(pb.GetCreditNoteRequest(id="CN-000001"))).credit_note == note
    assert list((await stub.ListCreditNotes(pb.ListCreditNotesRequest(invoice_id=number))).credit_notes) == [
        note
    ]
    before = await dump_tables(database)
    bad = pb.IssueCreditNoteRequest(
        invoice_id=number, reason="x", lines=[pb.CreditLine(invoice_line=1, amount="-1")]
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.IssueCreditNote(bad)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "negative" in (
        info.value.details() or ""
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetCreditNote(pb.GetCreditNoteRequest(id="CN-999999"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert await dump_tables(database) == before

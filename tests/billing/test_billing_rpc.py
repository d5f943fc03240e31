"""BillingService through a real grpc.aio server (both databases): conversions, status codes, the
pending-subscription watch driven by the real change feed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from billing.servicer import BillingServicer, PendingHub
from tests.billing.billing_helpers import EPOCH, FakeClock, World, dump_tables, repository, utc
from tests.support import grpc_server
from tollway import schema
from tollway.billing.v1 import billing_pb2 as pb
from tollway.billing.v1 import billing_pb2_grpc
from tollway.change_log import Topic
from tollway.changes import ChangeFeed, ReloadOnChange
from tollway.db import Database
from tollway.store.v1 import store_pb2

Code = grpc.StatusCode


def ts(*parts: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(utc(*parts))
    return stamp


@pytest.fixture
async def feed(database: Database) -> AsyncIterator[ChangeFeed]:
    changes = ChangeFeed(database, poll_seconds=0.05)
    yield changes
    await changes.stop()


@pytest.fixture
async def stub(database: Database, feed: ChangeFeed) -> AsyncIterator[billing_pb2_grpc.BillingServiceStub]:
    hub = PendingHub()
    feed.subscribe(ReloadOnChange("billing", frozenset({Topic.SUBSCRIPTIONS}), hub.notify))
    await feed.start()
    servicer = BillingServicer(repository(database, FakeClock(utc(2026, 12, 3))), hub)
    registration = lambda server: billing_pb2_grpc.add_BillingServiceServicer_to_server(servicer, server)  # noqa: E731
    async with grpc_server(registration) as channel:
        yield billing_pb2_grpc.BillingServiceStub(channel)


async def expect(code: grpc.StatusCode, call: object) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    assert info.value.code() == code, info.value.details()
    return info.value.details() or ""


async def test_invoice_lifecycle_over_grpc(
    stub: billing_pb2_grpc.BillingServiceStub, database: Database
) -> None:
    world = World(database)
    plan = await world.plan("gold", recurring_fee="49.00", unit_price="0.0004")
    api = await world.api(plan)
    sub = await world.subscription(await world.application(), api, plan, EPOCH)
    await world.usage(sub, utc(2026, 11, 3), success=1_234_567, throttled=9)

    summary = await stub.GetUsageSummary(
        pb.GetUsageSummaryRequest(subscription_id=sub.id, at=ts(2026, 11, 20))
    )
    assert summary.total.success == 1_234_567 and summary.total.throttled == 9
    assert summary.period_start.ToDatetime() == utc(2026, 11, 1).replace(tzinfo=None)

    [draft] = (await stub.GenerateInvoices(pb.GenerateInvoicesRequest(billing_month="2026-11"))).invoices
    assert draft.state == pb.INVOICE_STATE_DRAFT and draft.total == "542.83"
    assert draft.usage_completeness == pb.USAGE_COMPLETENESS_UNKNOWN
    assert [line.kind for line in draft.lines] == ["FEE", "USAGE", "INFO_THROTTLED"]
    assert {line.plan_version for line in draft.lines} == {1}  # every line names the plan version

    final = (await stub.FinalizeInvoice(pb.FinalizeInvoiceRequest(id=draft.id))).invoice
    again = (await stub.FinalizeInvoice(pb.FinalizeInvoiceRequest(id=draft.id))).invoice
    assert final.number and final.number == again.number and final.state == pb.INVOICE_STATE_FINALIZED
    got = (await stub.GetInvoice(pb.GetInvoiceRequest(id=final.number))).invoice
    assert got.id == draft.id and len(got.lines) == 3

    listed = await stub.ListInvoices(pb.ListInvoicesRequest(state=pb.INVOICE_STATE_FINALIZED))
    assert [i.id for i in listed.invoices] == [draft.id] and not listed.invoices[0].lines
    export = await stub.ExportInvoices(
        pb.ExportInvoicesRequest(
            period_start=ts(2026, 11, 1), period_end=ts(2026, 12, 1), format=pb.EXPORT_FORMAT_CSV
        )
    )
    assert export.content_type == "text/csv" and final.number in export.content

    voided = (await stub.VoidInvoice(pb.VoidInvoiceRequest(id=draft.id, reason="duplicate"))).invoice
    assert voided.state == pb.INVOICE_STATE_VOID and voided.number == final.number


async def test_bad_requests_get_clear_statuses_and_change_nothing(
    stub: billing_pb2_grpc.BillingServiceStub, database: Database
) -> None:
    world = World(database)
    plan = await world.plan("weird", currency="XXX", unit_price="1")
    api = await world.api(plan)
    sub = await world.subscription(await world.application(), api, plan, EPOCH)
    await world.usage(sub, utc(2026, 11, 3), success=1)
    before = await dump_tables(database)

    await expect(Code.NOT_FOUND, stub.GetUsageSummary(pb.GetUsageSummaryRequest(subscription_id="sub_nope")))
    details = await expect(
        Code.INVALID_ARGUMENT,
        stub.GenerateInvoices(
            pb.GenerateInvoicesRequest(period_start=ts(2026, 12, 1), period_end=ts(2026, 11, 1))
        ),
    )
    assert "after its start" in details
    # A stored plan that cannot be priced: the request is fine, the stored record is not.
    assert "currency" in await expect(
        Code.FAILED_PRECONDITION, stub.GenerateInvoices(pb.GenerateInvoicesRequest(billing_month="2026-11"))
    )
    await expect(
        Code.INVALID_ARGUMENT, stub.GenerateInvoices(pb.GenerateInvoicesRequest(billing_month="11/2026"))
    )
    await expect(Code.INVALID_ARGUMENT, stub.GenerateInvoices(pb.GenerateInvoicesRequest()))
    await expect(
        Code.NOT_FOUND,
        stub.GenerateInvoices(
            pb.GenerateInvoicesRequest(billing_month="2026-11", subscription_id="sub_nope")
        ),
    )
    await expect(Code.INVALID_ARGUMENT, stub.FinalizeInvoice(pb.FinalizeInvoiceRequest()))
    await expect(Code.NOT_FOUND, stub.VoidInvoice(pb.VoidInvoiceRequest(id="inv_nope", reason="x")))
    await expect(
        Code.INVALID_ARGUMENT, stub.RejectSubscription(pb.RejectSubscriptionRequest(subscription_id=sub.id))
    )
    await expect(
        Code.FAILED_PRECONDITION,
        stub.ApproveSubscription(pb.ApproveSubscriptionRequest(subscription_id=sub.id)),
    )
    await expect(
        Code.INVALID_ARGUMENT,
        stub.ExportInvoices(
            pb.ExportInvoicesRequest(period_start=ts(2026, 11, 1), period_end=ts(2026, 12, 1))
        ),
    )
    await expect(
        Code.INVALID_ARGUMENT, stub.ExportInvoices(pb.ExportInvoicesRequest(format=pb.EXPORT_FORMAT_CSV))
    )
    assert await dump_tables(database) == before


async def test_watch_streams_pending_subscriptions_as_they_arrive(
    stub: billing_pb2_grpc.BillingServiceStub, database: Database, feed: ChangeFeed
) -> None:
    world = World(database)
    plan = await world.plan("gated", approval_required=True)
    api = await world.api(plan)
    first = await world.subscription(await world.application(), api, plan, EPOCH, state="PENDING_APPROVAL")
    call = stub.WatchPendingSubscriptions(pb.WatchPendingSubscriptionsRequest())
    try:
        initial = await asyncio.wait_for(call.read(), 5)
        assert initial.subscription.id == first.id
        assert initial.subscription.state == store_pb2.SUBSCRIPTION_STATE_PENDING_APPROVAL

        # A new request, written the way the store writes (revision bump in the same transaction).
        app = await world.application()
        async with database.session() as session:
            await database.record_change(session)
            session.add(
                schema.Subscription(
                    id="sub_arrivesnow1", application_id=app.id, api_id=api.id, plan_id=plan.id,
                    state="PENDING_APPROVAL",
                )
            )  # fmt: skip
            await session.commit()
        feed.committed()
        arrived = await asyncio.wait_for(call.read(), 1.0)
        assert arrived.subscription.id == "sub_arrivesnow1"

        pending = await stub.ListPendingSubscriptions(pb.ListPendingSubscriptionsRequest())
        assert {s.id for s in pending.subscriptions} == {first.id, "sub_arrivesnow1"}
        approved = await stub.ApproveSubscription(pb.ApproveSubscriptionRequest(subscription_id=first.id))
        assert approved.subscription.state == store_pb2.SUBSCRIPTION_STATE_ACTIVE
        events = await stub.ListSubscriptionEvents(pb.ListSubscriptionEventsRequest(subscription_id=first.id))
        assert [e.kind for e in events.events] == ["APPROVED"]
    finally:
        call.cancel()


async def test_reconcile_without_a_rate_limiter_says_so(
    stub: billing_pb2_grpc.BillingServiceStub, database: Database
) -> None:
    world = World(database)
    plan = await world.plan("p")
    api = await world.api(plan)
    sub = await world.subscription(await world.application(), api, plan, EPOCH)
    # 6 successful requests (one of them beyond a soft quota), 2 client errors: 8 admitted.
    await world.usage(sub, utc(2026, 12, 2), success=6, overage=1, client_error=2, throttled=3)
    [row] = (await stub.ReconcileUsage(pb.ReconcileUsageRequest(subscription_id=sub.id))).subscriptions
    assert (row.metered_admitted, row.billed_successful) == (8, 6)
    assert not row.limiter_available and "no rate limiter" in row.note and row.difference == 0

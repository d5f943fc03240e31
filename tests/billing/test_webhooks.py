"""Webhooks end to end in one process (both databases): endpoints over the real BillingService,
events written with invoice finalization, credit notes and subscription transitions, deliveries to a
real local HTTP receiver by two deliverers at once (as two billing replicas would), retries, the
delivery log, and StreamEvents replaying and then following the outbox."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest
from sqlmodel import func, select

from billing.servicer import BillingServicer
from billing.webhook_delivery import WebhookDeliverer, WebhookSettings
from billing.webhook_secrets import SecretBox
from billing.webhook_store import WebhookStore
from tests.billing.billing_helpers import EPOCH, FakeClock, World, dump_tables, repository, utc
from tests.billing.webhook_receiver import Receiver
from tests.support import grpc_server
from tollway.billing.v1 import billing_pb2 as pb
from tollway.billing.v1 import billing_pb2_grpc
from tollway.db import Database
from tollway.schema_billing import EventOutbox, WebhookEndpoint

FAST = WebhookSettings(
    secret_key="test-key", timeout_seconds=5, max_attempts=5, retry_base_seconds=0.05,
    retry_max_seconds=0.2, poll_seconds=0.05,
)  # fmt: skip


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.fixture
async def store(database: Database) -> WebhookStore:
    return WebhookStore(database, SecretBox(FAST.secret_key))


@pytest.fixture
async def stub(database: Database, store: WebhookStore) -> AsyncIterator[billing_pb2_grpc.BillingServiceStub]:
    servicer = BillingServicer(repository(database, FakeClock(utc(2026, 12, 3))), webhooks=store)
    registration = lambda server: billing_pb2_grpc.add_BillingServiceServicer_to_server(servicer, server)  # noqa: E731
    async with grpc_server(registration) as channel:
        yield billing_pb2_grpc.BillingServiceStub(channel)


@pytest.fixture
def receiver() -> AsyncIterator[Receiver]:
    started = Receiver(failures=2).start()
    yield started  # type: ignore[misc]
    started.stop()


async def make_events(world: World, stub: billing_pb2_grpc.BillingServiceStub) -> None:
    """An invoice finalized, a credit note issued and a subscription suspended: three events."""
    plan = await world.plan("gold", recurring_fee="49.00", unit_price="0.0004")
    sub = await world.subscription(await world.application(), await world.api(plan), plan, EPOCH)
    await world.usage(sub, utc(2026, 11, 3), success=1000)
    [draft] = (await stub.GenerateInvoices(pb.GenerateInvoicesRequest(billing_month="2026-11"))).invoices
    await stub.FinalizeInvoice(pb.FinalizeInvoiceRequest(id=draft.id))
    await stub.IssueCreditNote(pb.IssueCreditNoteRequest(invoice_id=draft.id, reason="goodwill"))
    await stub.SuspendSubscription(pb.SuspendSubscriptionRequest(subscription_id=sub.id, reason="unpaid"))


async def test_bad_url_is_invalid_argument_and_writes_nothing(
    stub: billing_pb2_grpc.BillingServiceStub, database: Database
) -> None:
    before = await dump_tables(database)
    for url, events in (("ftp://example.com/x", []), ("not a url", []), ("https://ok.example/", ["nope"])):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.CreateWebhookEndpoint(pb.CreateWebhookEndpointRequest(url=url, event_types=events))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert "http:// or https://" in (info.value.details() or "") or "event type" in (
        info.value.details() or ""
    )
    assert await dump_tables(database) == before


async def test_signed_deliveries_retried_exactly_once_each(
    stub: billing_pb2_grpc.BillingServiceStub, store: WebhookStore, database: Database, receiver: Receiver
) -> None:
    created = await stub.CreateWebhookEndpoint(
        pb.CreateWebhookEndpointRequest(url=receiver.url, description="accounting")
    )
    receiver.secret = created.signing_secret
    assert created.signing_secret.startswith("whsec_")
    endpoint = created.endpoint
    # The secret is shown once: never listed, and not stored in the clear.
    listed = await stub.ListWebhookEndpoints(pb.ListWebhookEndpointsRequest())
    assert created.signing_secret not in str(listed)
    async with database.session() as session:
        row = await session.get(WebhookEndpoint, endpoint.id)
        assert row is not None and created.signing_secret not in row.secret_encrypted
    # A second endpoint that wants only invoices, disabled: it gets nothing until enabled.
    other = (
        await stub.CreateWebhookEndpoint(
            pb.CreateWebhookEndpointRequest(url=receiver.url + "&other", event_types=["invoice.finalized"])
        )
    ).endpoint
    await stub.DisableWebhookEndpoint(pb.DisableWebhookEndpointRequest(id=other.id))

    await make_events(World(database), stub)
    async with database.session() as session:
        events = list((await session.exec(select(EventOutbox).order_by(EventOutbox.sequence))).all())  # type: ignore[arg-type]
    assert [e.type for e in events] == [
        "invoice.finalized",
        "credit_note.issued",
        "subscription.state_changed",
    ]
    assert events[2].data["to_state"] == "SUSPENDED" and events[2].data["reason"] == "unpaid"

    # Two deliverers, as two billing replicas: each event is still delivered once.
    deliverers = [WebhookDeliverer(store, FAST), WebhookDeliverer(store, FAST)]
    for deliverer in deliverers:
        await deliverer.start()
    try:
        await eventually(lambda: _delivered(stub, endpoint.id, 3))
    finally:
        for deliverer in deliverers:
            await deliverer.stop()

    got = receiver.snapshot()
    assert receiver.successes() == {e.id: 1 for e in events}  # exactly once per event id
    assert len(got) == 9  # failed twice, then delivered, each
    assert all(r.signature_ok for r in got) and receiver.timestamps_match()
    first = next(r for r in got if r.status == 200 and r.event_id == events[0].id)
    assert first.body["id"] == events[0].id and first.body["type"] == "invoice.finalized"
    assert first.body["data"]["number"] == "INV-000001" and first.body["data"]["total"]
    assert first.body["created_at"].endswith("Z")
    assert first.headers["Tollway-Event-Type"] == "invoice.finalized"

    log = (
        await stub.ListWebhookDeliveries(pb.ListWebhookDeliveriesRequest(endpoint_id=endpoint.id))
    ).deliveries
    assert [d.event_id for d in log] == [e.id for e in reversed(events)]  # newest first
    for delivery in log:
        assert delivery.state == pb.WEBHOOK_DELIVERY_STATE_DELIVERED and delivery.attempts == 3
        assert [a.status_code for a in delivery.attempt_log] == [500, 500, 200]
        assert delivery.attempt_log[0].error == "HTTP 500"
        assert len(delivery.attempt_log[0].response_prefix) <= 256  # the 4 KiB body is not kept
        assert delivery.HasField("deliver_time")
    # The disabled endpoint's deliveries were never made (it was disabled when they were fanned out).
    assert not (
        await stub.ListWebhookDeliveries(pb.ListWebhookDeliveriesRequest(endpoint_id=other.id))
    ).deliveries

    await stub.DeleteWebhookEndpoint(pb.DeleteWebhookEndpointRequest(id=endpoint.id))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ListWebhookDeliveries(pb.ListWebhookDeliveriesRequest(endpoint_id=endpoint.id))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_receiver_that_never_answers_2xx_ends_failed(
    stub: billing_pb2_grpc.BillingServiceStub, store: WebhookStore, database: Database
) -> None:
    receiver = Receiver(failures=1_000).start()
    try:
        endpoint = (
            await stub.CreateWebhookEndpoint(pb.CreateWebhookEndpointRequest(url=receiver.url))
        ).endpoint
        await make_events(World(database), stub)
        deliverer = WebhookDeliverer(store, FAST)
        await deliverer.start()
        try:
            failed = pb.WEBHOOK_DELIVERY_STATE_FAILED
            await eventually(lambda: _count(stub, endpoint.id, failed, 3))
        finally:
            await deliverer.stop()
        assert len(receiver.snapshot()) == 3 * FAST.max_attempts
    finally:
        receiver.stop()


async def test_stream_events_replays_then_follows(
    stub: billing_pb2_grpc.BillingServiceStub, database: Database
) -> None:
    world = World(database)
    await make_events(world, stub)
    async with database.session() as session:
        total = (await session.exec(select(func.count()).select_from(EventOutbox))).one()
    assert total == 3

    call = stub.StreamEvents(pb.StreamEventsRequest(from_sequence=0))
    replayed = [await call.read() for _ in range(3)]
    assert [r.event.type for r in replayed] == [
        "invoice.finalized",
        "credit_note.issued",
        "subscription.state_changed",
    ]
    sequences = [r.event.sequence for r in replayed]
    assert sequences == sorted(sequences)
    assert json.loads(replayed[2].event.data_json)["to_state"] == "SUSPENDED"
    # Live: a transition committed now arrives on the open stream.
    sub_id = json.loads(replayed[2].event.data_json)["subscription_id"]
    await stub.ResumeSubscription(pb.ResumeSubscriptionRequest(subscription_id=sub_id))
    live = await asyncio.wait_for(call.read(), 30)
    assert live.event.type == "subscription.state_changed" and live.event.sequence > sequences[-1]
    assert json.loads(live.event.data_json)["to_state"] == "ACTIVE"
    call.cancel()

    # Resuming from a sequence, filtered by type.
    resumed = stub.StreamEvents(
        pb.StreamEventsRequest(from_sequence=sequences[0], event_types=["credit_note.issued"])
    )
    first = await asyncio.wait_for(resumed.read(), 30)
    assert first.event.type == "credit_note.issued"
    resumed.cancel()

    bad = stub.StreamEvents(pb.StreamEventsRequest(event_types=["invoice.paid"]))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await bad.read()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def _delivered(stub: billing_pb2_grpc.BillingServiceStub, endpoint_id: str, count: int) -> bool:
    return await _count(stub, endpoint_id, pb.WEBHOOK_DELIVERY_STATE_DELIVERED, count)


async def _count(
    stub: billing_pb2_grpc.BillingServiceStub, endpoint_id: str, state: pb.WebhookDeliveryState, count: int
) -> bool:
    request = pb.ListWebhookDeliveriesRequest(endpoint_id=endpoint_id, state=state)
    return len((await stub.ListWebhookDeliveries(request)).deliveries) >= count


async def test_a_changed_secret_key_fails_deliveries_instead_of_blocking_them(
    database: Database, store: WebhookStore, receiver: Receiver
) -> None:
    from dataclasses import replace

    from tollway.events import EventType, emit_event

    endpoint, _ = await store.create(receiver.url, [], "")
    async with database.session() as session:
        await emit_event(session, EventType.CREDIT_EXHAUSTED, {"application_id": "app_x", "currency": "EUR"})
        await session.commit()
    other_key = replace(FAST, secret_key="another-key")
    deliverer = WebhookDeliverer(WebhookStore(database, SecretBox(other_key.secret_key)), other_key)
    await deliverer.start()
    try:
        await eventually(lambda: _failed_views(store, endpoint.id))
    finally:
        await deliverer.stop()
    [view] = await store.deliveries(endpoint.id)
    assert "cannot be decrypted" in view.delivery.last_error and not receiver.snapshot()


async def _failed_views(store: WebhookStore, endpoint_id: str) -> bool:
    return bool(await store.deliveries(endpoint_id, state="FAILED"))


async def test_a_hanging_receiver_does_not_hold_up_other_endpoints(
    stub: billing_pb2_grpc.BillingServiceStub, store: WebhookStore, database: Database
) -> None:
    import threading

    gate = threading.Event()
    hanging, healthy = Receiver(gate=gate).start(), Receiver().start()
    try:
        stuck = (await stub.CreateWebhookEndpoint(pb.CreateWebhookEndpointRequest(url=hanging.url))).endpoint
        fine = (await stub.CreateWebhookEndpoint(pb.CreateWebhookEndpointRequest(url=healthy.url))).endpoint
        await make_events(World(database), stub)
        from dataclasses import replace

        deliverer = WebhookDeliverer(store, replace(FAST, timeout_seconds=60))
        await deliverer.start()
        try:
            # Every event reaches the healthy endpoint while the other's attempts are still hanging
            # (none of them has ended, so none is recorded).
            await eventually(lambda: _delivered(stub, fine.id, 3))
            assert hanging.waiting == 3 and not hanging.snapshot()
            assert [view.delivery.attempts for view in await store.deliveries(stuck.id)] == [0, 0, 0]
            gate.set()
            await eventually(lambda: _delivered(stub, stuck.id, 3))
        finally:
            await deliverer.stop()
    finally:
        gate.set()
        hanging.stop()
        healthy.stop()


async def test_cli_creates_lists_shows_the_log_and_refuses_a_bad_url(
    database: Database, store: WebhookStore, receiver: Receiver
) -> None:
    from typer.testing import CliRunner

    from tollway.app.cli import app

    servicer = BillingServicer(repository(database, FakeClock(utc(2026, 12, 3))), webhooks=store)
    server = grpc.aio.server()
    billing_pb2_grpc.add_BillingServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()

    async def cli(*args: str) -> tuple[int, str]:
        command = ["billing", "webhooks", *args, "--addr", f"127.0.0.1:{port}", "--token", "unused"]
        result = await asyncio.to_thread(CliRunner().invoke, app, command)
        return result.exit_code, result.output

    try:
        code, out = await cli("create", "--url", "ftp://example.com/x")
        assert code != 0 and "http:// or https://" in out
        assert await store.list_endpoints() == []
        events = "invoice.finalized, credit_note.issued"
        code, out = await cli("create", "--url", receiver.url, "--events", events)
        assert code == 0, out
        created = json.loads(out)
        assert created["signing_secret"].startswith("whsec_")
        assert created["endpoint"]["event_types"] == ["invoice.finalized", "credit_note.issued"]
        code, out = await cli("list")
        assert code == 0 and created["endpoint"]["id"] in out and "whsec_" not in out
        code, out = await cli("deliveries", created["endpoint"]["id"], "--state", "failed")
        assert code == 0 and json.loads(out) == {"deliveries": []}
        code, out = await cli("disable", created["endpoint"]["id"])
        assert code == 0 and json.loads(out)["endpoint"]["state"] == "WEBHOOK_ENDPOINT_STATE_DISABLED"
        code, out = await cli("delete", created["endpoint"]["id"])
        assert code == 0 and await store.list_endpoints() == []
    finally:
        await server.stop(grace=None)


async def test_credit_burned_to_zero_emits_alerts_and_credit_exhausted_once(database: Database) -> None:
    from billing.metering import Metering
    from tests.billing.billing_helpers import Commits

    now = utc(2026, 12, 5, 12)
    billing = repository(database, FakeClock(now))
    world = World(database)
    plan = await world.plan("prepaid", currency="USD", unit_price="0.01", prepaid=True)
    app = await world.application()
    sub = await world.subscription(app, await world.api(plan), plan, utc(2026, 11, 1))
    await billing.credit.top_up(app.id, "USD", "0.05", "t1")
    metering = Metering(database, Commits(), FakeClock(now))
    await world.usage(sub, now, success=5)
    await metering.round()
    await world.usage(sub, now, success=1)  # overdrawn further: no second credit.exhausted
    await metering.round()
    async with database.session() as session:
        events = list((await session.exec(select(EventOutbox).order_by(EventOutbox.sequence))).all())  # type: ignore[arg-type]
    exhausted = [e for e in events if e.type == "credit.exhausted"]
    assert [e.data for e in exhausted] == [{"application_id": app.id, "currency": "USD", "balance": "0.00"}]
    raised = [e.data for e in events if e.type == "alert.raised"]
    assert sorted(a["threshold"] for a in raised) == [50, 80, 100]
    assert {a["kind"] for a in raised} == {"CREDIT"} and {a["target_id"] for a in raised} == {app.id}

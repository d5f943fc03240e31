"""Event outbox retention on both databases: only old events whose deliveries are all settled are
removed, oldest first and in batches, never past an event still being delivered; StreamEvents from
before what is kept answers FAILED_PRECONDITION naming the oldest sequence available."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import grpc
import pytest
from sqlmodel import col, select

from billing import event_retention
from billing.event_retention import EventRetention
from billing.servicer import BillingServicer
from billing.webhook_delivery import WebhookDeliverer, WebhookSettings
from billing.webhook_secrets import SecretBox
from billing.webhook_store import WebhookStore
from tests.billing.billing_helpers import FakeClock, repository, utc
from tests.billing.test_webhooks import eventually
from tests.billing.webhook_receiver import Receiver
from tests.support import grpc_server
from tollway.billing.v1 import billing_pb2 as pb
from tollway.billing.v1 import billing_pb2_grpc
from tollway.db import Database
from tollway.events import EventType, emit_event
from tollway.schema_billing import EventOutbox, WebhookDelivery

NOW = utc(2026, 12, 3)
ONE_TRY = WebhookSettings(secret_key="test-key", timeout_seconds=5, max_attempts=1, poll_seconds=0.05)


@pytest.fixture
async def store(database: Database) -> WebhookStore:
    return WebhookStore(database, SecretBox(ONE_TRY.secret_key))


@pytest.fixture
async def stub(database: Database, store: WebhookStore) -> AsyncIterator[billing_pb2_grpc.BillingServiceStub]:
    servicer = BillingServicer(repository(database, FakeClock(NOW)), webhooks=store)
    registration = lambda server: billing_pb2_grpc.add_BillingServiceServicer_to_server(servicer, server)  # noqa: E731
    async with grpc_server(registration) as channel:
        yield billing_pb2_grpc.BillingServiceStub(channel)


async def _emit(database: Database, days_ago: int) -> int:
    async with database.session() as session:
        event = await emit_event(
            session, EventType.ALERT_RAISED, {"n": days_ago}, at=NOW - timedelta(days=days_ago)
        )
        await session.commit()
        assert event.sequence is not None
        return event.sequence


async def _kept(database: Database) -> list[int]:
    async with database.session() as session:
        rows = await session.exec(select(EventOutbox.sequence).order_by(col(EventOutbox.sequence)))
        return [s for s in rows.all() if s is not None]


async def _refusal(stub: billing_pb2_grpc.BillingServiceStub, from_sequence: int) -> grpc.aio.AioRpcError:
    call = stub.StreamEvents(pb.StreamEventsRequest(from_sequence=from_sequence))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    return info.value


async def test_old_settled_events_are_pruned_and_a_replay_from_before_them_is_refused(
    database: Database,
    store: WebhookStore,
    stub: billing_pb2_grpc.BillingServiceStub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(event_retention, "PRUNE_BATCH", 2)  # several batches in one round
    retention = EventRetention(database, 30, clock=lambda: NOW)
    unwanted = [await _emit(database, 40) for _ in range(3)]  # no endpoint: settled once fanned out
    await store.fan_out()
    receiver = Receiver(failures=1_000).start()
    try:
        await stub.CreateWebhookEndpoint(pb.CreateWebhookEndpointRequest(url=receiver.url))
        pending = await _emit(database, 35)  # old, but its delivery is not settled yet
        recent = await _emit(database, 1)
        await store.fan_out()
        not_fanned = await _emit(database, 50)  # (sequence order, not age, decides what goes first)

        assert await retention.prune() == 3
        assert await _kept(database) == [pending, recent, not_fanned]
        refused = await _refusal(stub, 0)
        assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert f"oldest available is sequence {pending}" in (refused.details() or "")
        assert f"from_sequence {unwanted[-1]} or later" in (refused.details() or "")
        resumed = stub.StreamEvents(pb.StreamEventsRequest(from_sequence=unwanted[-1]))
        assert (await resumed.read()).event.sequence == pending
        resumed.cancel()

        deliverer = WebhookDeliverer(store, ONE_TRY)  # one attempt: the failing receiver makes it FAILED
        await deliverer.start()
        try:

            async def settled() -> bool:
                async with database.session() as session:
                    rows = await session.exec(select(WebhookDelivery.state))
                    states = list(rows.all())
                    return len(states) == 3 and "PENDING" not in states

            await eventually(settled)
        finally:
            await deliverer.stop()
    finally:
        receiver.stop()

    assert await retention.prune() == 1  # the FAILED one; the recent one stays
    assert await _kept(database) == [recent, not_fanned]
    assert await retention.prune() == 0
    refused = await _refusal(stub, unwanted[-1])
    assert f"oldest available is sequence {recent}" in (refused.details() or "")
    resumed = stub.StreamEvents(pb.StreamEventsRequest(from_sequence=pending))
    assert (await resumed.read()).event.sequence == recent
    resumed.cancel()

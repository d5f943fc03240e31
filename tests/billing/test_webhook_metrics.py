"""Webhook delivery metrics on both databases: attempts counted by result (a receiver failing twice
then answering 2xx: retried twice, delivered once; one that never answers 2xx: failed), the latency of
each delivery observed once, and the backlog gauge following the outbox down to zero."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from billing.servicer import BillingServicer
from billing.webhook_delivery import WebhookDeliverer, WebhookSettings
from billing.webhook_secrets import SecretBox
from billing.webhook_store import WebhookStore
from tests.billing.billing_helpers import FakeClock, World, repository, utc
from tests.billing.test_webhooks import eventually, make_events
from tests.billing.webhook_receiver import Receiver
from tests.support import grpc_server
from tollway.billing.v1 import billing_pb2 as pb
from tollway.billing.v1 import billing_pb2_grpc
from tollway.db import Database

FAST = WebhookSettings(
    secret_key="test-key", timeout_seconds=5, max_attempts=3, retry_base_seconds=0.05,
    retry_max_seconds=0.2, poll_seconds=0.05,
)  # fmt: skip


@pytest.fixture
async def store(database: Database) -> WebhookStore:
    return WebhookStore(database, SecretBox(FAST.secret_key))


@pytest.fixture
async def stub(database: Database, store: WebhookStore) -> AsyncIterator[billing_pb2_grpc.BillingServiceStub]:
    servicer = BillingServicer(repository(database, FakeClock(utc(2026, 12, 3))), webhooks=store)
    registration = lambda server: billing_pb2_grpc.add_BillingServiceServicer_to_server(servicer, server)  # noqa: E731
    async with grpc_server(registration) as channel:
        yield billing_pb2_grpc.BillingServiceStub(channel)


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(("failures", "expected"), [(2, (3, 6, 0)), (1_000, (0, 6, 3))])
async def test_attempts_are_counted_by_result_and_the_backlog_drains(
    database: Database,
    store: WebhookStore,
    stub: billing_pb2_grpc.BillingServiceStub,
    failures: int,
    expected: tuple[int, int, int],
) -> None:
    receiver = Receiver(failures=failures).start()
    deliverer = WebhookDeliverer(store, FAST)
    registry = deliverer.metrics.registry
    try:
        assert [_value(registry, "tollway_webhook_deliveries_total", result=r) for r in
                ("delivered", "retried", "failed")] == [0, 0, 0]  # fmt: skip
        await stub.CreateWebhookEndpoint(pb.CreateWebhookEndpointRequest(url=receiver.url))
        await make_events(World(database), stub)  # three events
        assert await store.backlog() == 3  # not fanned out yet
        await deliverer.start()
        delivered, retried, failed = expected

        async def done() -> bool:
            counts = [
                _value(registry, "tollway_webhook_deliveries_total", result=r)
                for r in ("delivered", "retried", "failed")
            ]
            return counts == [delivered, retried, failed] and await store.backlog() == 0

        await eventually(done)
        assert _value(registry, "tollway_webhook_delivery_seconds_count") == delivered
        deliverer.metrics.backlog.set(-1)  # the next look (a few seconds later) sets it again
        deliverer.wake()

        async def drained() -> bool:
            return _value(registry, "tollway_webhook_outbox_backlog") == 0

        await eventually(drained)
    finally:
        await deliverer.stop()
        receiver.stop()

"""billing/ inside a Tollway process: the repository, BillingService on the admin server, the webhook
deliverer (a background task; several replicas share the work through leases), and the gRPC clients
for usage completeness and the rate limiter's counts (through the admin port, so usage/
and throttle/ are reached by contract whether they run here or not)."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client.registry import Collector

from billing.account_servicer import BillingAccountServicer
from billing.clients import AdminClient, QuotaReader, UsageCompleteness
from billing.event_retention import EventRetention
from billing.metering import Metering
from billing.reconcile import AdmittedCounts, NoLimiter
from billing.servicer import BillingServicer, PendingHub
from billing.store import BillingRepository, CompletenessSource, UnknownCompleteness
from billing.webhook_delivery import WebhookDeliverer, WebhookSettings
from billing.webhook_secrets import SecretBox
from billing.webhook_store import WebhookStore
from tollway.billing.v1 import accounts_pb2, accounts_pb2_grpc, billing_pb2, billing_pb2_grpc
from tollway.change_log import Topic
from tollway.changes import ChangeFeed, ChangeListener, ReloadOnChange
from tollway.component import GrpcService, RunningComponent, service_name
from tollway.db import Database
from tollway.settings import AdminClientSettings


class Billing(RunningComponent):
    def __init__(
        self,
        settings: AdminClientSettings,
        db: Database,
        changes: ChangeFeed,
        webhooks: WebhookSettings,
        event_retention_days: int = 30,
    ) -> None:
        self.hub = PendingHub()
        # TLS on the admin port would need a client certificate for this loopback call; until one is
        # configured, completeness is reported as unknown and reconciliation as unavailable.
        self.client = None if settings.tls else AdminClient(settings.addr, settings.token)
        completeness: CompletenessSource = (
            UsageCompleteness(self.client) if self.client is not None else UnknownCompleteness()
        )
        self.limiter: AdmittedCounts = QuotaReader(self.client) if self.client is not None else NoLimiter()
        self.webhooks = WebhookStore(db, SecretBox(webhooks.secret_key))
        self.deliverer = WebhookDeliverer(self.webhooks, webhooks)
        self.retention = EventRetention(db, event_retention_days)

        def metered() -> None:
            changes.committed()
            # The commit may carry events: deliver them now rather than at the next poll.
            self.deliverer.wake()

        def committed() -> None:
            metered()
            # It may have added credit or a cap: meter now rather than at the next idle round.
            self.metering.wake()

        self.repository = BillingRepository(db, committed, completeness=completeness)
        self.metering = Metering(db, metered)

    def admin_services(self) -> Sequence[GrpcService]:
        servicer = BillingServicer(self.repository, self.hub, self.limiter, self.webhooks)
        accounts = BillingAccountServicer(self.repository.accounts)
        return (
            GrpcService(
                service_name(billing_pb2, "BillingService"),
                lambda server: billing_pb2_grpc.add_BillingServiceServicer_to_server(servicer, server),
            ),
            GrpcService(
                service_name(accounts_pb2, "BillingAccountService"),
                lambda server: accounts_pb2_grpc.add_BillingAccountServiceServicer_to_server(
                    accounts, server
                ),
            ),
        )

    def metrics_collectors(self) -> Sequence[Collector]:
        return (self.repository.invoices.metrics.registry, self.deliverer.metrics.registry)

    def change_listeners(self) -> Sequence[ChangeListener]:
        # Wakes the pending-approval watchers.
        return (ReloadOnChange("billing", frozenset({Topic.SUBSCRIPTIONS}), self.hub.notify),)

    async def start(self) -> None:
        await self.metering.start()
        await self.deliverer.start()
        await self.retention.start()

    async def stop(self) -> None:
        await self.retention.stop()
        await self.deliverer.stop()
        await self.metering.stop()
        if self.client is not None:
            await self.client.close()

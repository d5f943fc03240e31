"""billing/ inside a Tollway process: the repository, BillingService on the admin server, and the
gRPC clients for usage completeness and the rate limiter's counts (through the admin port, so usage/
and throttle/ are reached by contract whether they run here or not)."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client.registry import Collector

from billing.account_servicer import BillingAccountServicer
from billing.clients import AdminClient, QuotaReader, UsageCompleteness
from billing.metering import Metering
from billing.reconcile import AdmittedCounts, NoLimiter
from billing.servicer import BillingServicer, PendingHub
from billing.store import BillingRepository, CompletenessSource, UnknownCompleteness
from tollway.billing.v1 import accounts_pb2, accounts_pb2_grpc, billing_pb2, billing_pb2_grpc
from tollway.change_log import Topic
from tollway.changes import ChangeFeed, ChangeListener, ReloadOnChange
from tollway.component import GrpcService, RunningComponent, service_name
from tollway.db import Database
from tollway.settings import AdminClientSettings


class Billing(RunningComponent):
    def __init__(self, settings: AdminClientSettings, db: Database, changes: ChangeFeed) -> None:
        self.hub = PendingHub()
        # TLS on the admin port would need a client certificate for this loopback call; until one is
        # configured, completeness is reported as unknown and reconciliation as unavailable.
        self.client = None if settings.tls else AdminClient(settings.addr, settings.token)
        completeness: CompletenessSource = (
            UsageCompleteness(self.client) if self.client is not None else UnknownCompleteness()
        )
        self.limiter: AdmittedCounts = QuotaReader(self.client) if self.client is not None else NoLimiter()
        self.repository = BillingRepository(db, changes.committed, completeness=completeness)
        self.metering = Metering(db, changes.committed)

    def admin_services(self) -> Sequence[GrpcService]:
        servicer = BillingServicer(self.repository, self.hub, self.limiter)
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
        return (self.repository.invoices.metrics.registry,)

    def change_listeners(self) -> Sequence[ChangeListener]:
        # Wakes the pending-approval watchers.
        return (ReloadOnChange("billing", frozenset({Topic.SUBSCRIPTIONS}), self.hub.notify),)

    async def start(self) -> None:
        await self.metering.start()

    async def stop(self) -> None:
        await self.metering.stop()
        if self.client is not None:
            await self.client.close()

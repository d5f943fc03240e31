"""billing/ inside a Tollway process: the repository, BillingService on the admin server, and the
gRPC clients for usage completeness and the rate limiter's counts (through the admin port, so usage/
and throttle/ are reached by contract whether they run here or not)."""

from __future__ import annotations

from typing import Any

from billing.clients import AdminClient, QuotaReader, UsageCompleteness
from billing.reconcile import AdmittedCounts, NoLimiter
from billing.servicer import BillingServicer, PendingHub
from billing.store import BillingRepository, CompletenessSource, UnknownCompleteness
from tollway.billing.v1 import billing_pb2, billing_pb2_grpc
from tollway.changes import ChangeFeed
from tollway.db import Database
from tollway.settings import Settings


class BillingComponent:
    def __init__(self, settings: Settings, db: Database, changes: ChangeFeed) -> None:
        self._changes = changes
        self.hub = PendingHub()
        # TLS on the admin port would need a client certificate for this loopback call; until one is
        # configured, completeness is reported as unknown and reconciliation as unavailable.
        tls = bool(getattr(settings, "admin_tls_cert_file", ""))
        self.client = None if tls else AdminClient(settings.admin_addr, settings.admin_token)
        completeness: CompletenessSource = (
            UsageCompleteness(self.client) if self.client is not None else UnknownCompleteness()
        )
        self.limiter: AdmittedCounts = QuotaReader(self.client) if self.client is not None else NoLimiter()
        self.repository = BillingRepository(db, changes.committed, completeness=completeness)

    def wire(self, admin: Any) -> None:
        """Registers BillingService on the admin GrpcServer and the pending watch on the change feed."""
        self._changes.subscribe(self.hub.notify)
        billing_pb2_grpc.add_BillingServiceServicer_to_server(
            BillingServicer(self.repository, self.hub, self.limiter),
            admin.add(billing_pb2.DESCRIPTOR.services_by_name["BillingService"].full_name),
        )

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

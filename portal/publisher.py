"""What the publisher does in the portal (signed in with the admin token): the approval queue, consumer
accounts, API reference documents, and analytics (portal/analytics.py). Approvals go through
BillingService, the same workflow `tollway billing approve` uses, so an approved subscription's keys
are admitted at the gateway within a second."""

from __future__ import annotations

from dataclasses import dataclass

from portal.auth import AccountService
from portal.backend import AdminServices
from tollway.billing.v1 import billing_pb2
from tollway.catalog.documents import ApiDocuments
from tollway.catalog.servicer import api_to_proto, plan_to_proto
from tollway.catalog.store import CatalogStore
from tollway.catalog.v1 import catalog_pb2
from tollway.schema_portal import ApiDocument, PortalAccount
from tollway.store.v1 import store_pb2


@dataclass(frozen=True, slots=True)
class PendingRequest:
    subscription: store_pb2.Subscription
    application: store_pb2.Application | None
    account: PortalAccount | None
    api: catalog_pb2.Api | None
    plan: catalog_pb2.Plan | None


class PublisherPortal:
    def __init__(
        self, admin: AdminServices, accounts: AccountService, catalog: CatalogStore, documents: ApiDocuments
    ) -> None:
        self._admin = admin
        self.accounts = accounts
        self._catalog = catalog
        self._documents = documents

    async def pending(self) -> list[PendingRequest]:
        response = await self._admin.call(
            self._admin.billing.ListPendingSubscriptions,
            billing_pb2.ListPendingSubscriptionsRequest(),
            billing_pb2.ListPendingSubscriptionsResponse,
        )
        apis = {record.api.id: api_to_proto(record) for record in await self._catalog.list_apis()}
        plans = {plan.id: plan_to_proto(plan) for plan in await self._catalog.list_plans()}
        found = []
        for subscription in response.subscriptions:
            application = await self._application(subscription.application_id)
            account = await self.accounts.store.account(application.owner) if application else None
            found.append(
                PendingRequest(
                    subscription,
                    application,
                    account,
                    apis.get(subscription.api_id),
                    plans.get(subscription.plan_id),
                )
            )
        return found

    async def _application(self, application_id: str) -> store_pb2.Application | None:
        response = await self._admin.call(
            self._admin.store.GetApplication,
            store_pb2.GetApplicationRequest(id=application_id),
            store_pb2.GetApplicationResponse,
        )
        return response.application

    async def approve(self, subscription_id: str, reason: str = "") -> store_pb2.Subscription:
        response = await self._admin.call(
            self._admin.billing.ApproveSubscription,
            billing_pb2.ApproveSubscriptionRequest(subscription_id=subscription_id, reason=reason),
            billing_pb2.ApproveSubscriptionResponse,
        )
        return response.subscription

    async def reject(self, subscription_id: str, reason: str) -> store_pb2.Subscription:
        response = await self._admin.call(
            self._admin.billing.RejectSubscription,
            billing_pb2.RejectSubscriptionRequest(subscription_id=subscription_id, reason=reason),
            billing_pb2.RejectSubscriptionResponse,
        )
        return response.subscription

    async def apis(self) -> list[tuple[catalog_pb2.Api, bool]]:
        """Every API (published or not) and whether it has a reference document."""
        documented = await self._documents.api_ids_with_documents()
        return [(api_to_proto(r), r.api.id in documented) for r in await self._catalog.list_apis()]

    async def plans(self) -> list[catalog_pb2.Plan]:
        return [plan_to_proto(plan) for plan in await self._catalog.list_plans()]

    async def set_document(self, api_id: str, content: bytes) -> ApiDocument:
        return await self._documents.set_document(api_id, content)

"""What a consumer can do, restricted to their own records: the one service layer behind the web pages
and the consumer gRPC API (tollway.portal.v1.ConsumerService).

Every operation names the account it acts for. Applications belong to an account when their `owner`
is the account's id; subscriptions, keys, usage and invoices belong to it through their application.
Each operation first proves ownership of what it names, then calls the admin service (portal/
backend.py), so validation, the approval workflow and messages are the admin's. What is not the
caller's answers NOT_FOUND with the very message a missing id gets, so an id reveals nothing."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from google.protobuf.duration_pb2 import Duration
from google.protobuf.field_mask_pb2 import FieldMask

from portal.backend import AdminServices
from portal.consumer_money import ConsumerMoney
from tollway.billing.v1 import billing_pb2
from tollway.catalog.documents import ApiDocuments
from tollway.catalog.servicer import api_to_proto, plan_to_proto
from tollway.catalog.store import CatalogStore
from tollway.catalog.v1 import catalog_pb2
from tollway.errors import InvalidArgument, NotFound
from tollway.lifecycle import shown_ref
from tollway.protoconv import timestamp
from tollway.schema import utcnow
from tollway.schema_portal import ApiDocument
from tollway.store.v1 import store_pb2
from tollway.throttle.v1 import throttle_pb2
from tollway.usage.v1 import usage_pb2

# A usage query returns at most this many windows (a month of hours per subscription is 744).
MAX_USAGE_WINDOWS = 5000
_USAGE_PAGE = 1000
DEFAULT_SPAN = {
    usage_pb2.GRANULARITY_MINUTE: timedelta(hours=1),
    usage_pb2.GRANULARITY_HOUR: timedelta(hours=24),
    usage_pb2.GRANULARITY_DAY: timedelta(days=30),
}


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    api: catalog_pb2.Api
    plans: tuple[catalog_pb2.Plan, ...]
    has_document: bool


def _application_missing(application_id: str) -> NotFound:
    # keymgr/applications.py words a missing application this way (ids are short: echoed whole).
    return NotFound(f"application {application_id.strip()!r} not found")


class ConsumerPortal(ConsumerMoney):
    def __init__(
        self,
        admin: AdminServices,
        catalog: CatalogStore,
        documents: ApiDocuments,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._admin = admin
        self._catalog = catalog
        self._documents = documents
        self._clock = clock

    # Catalog (published APIs only)

    async def catalog(self) -> list[CatalogEntry]:
        records = await self._catalog.list_apis(published_only=True)
        plans = {plan.id: plan for plan in await self._catalog.list_plans()}
        documented = await self._documents.api_ids_with_documents()
        return [
            CatalogEntry(
                api=api_to_proto(record),
                plans=tuple(plan_to_proto(plans[plan_id]) for plan_id in record.plan_ids if plan_id in plans),
                has_document=record.api.id in documented,
            )
            for record in records
        ]

    async def catalog_entry(self, api_id: str) -> CatalogEntry:
        for entry in await self.catalog():
            if entry.api.id == api_id.strip():
                return entry
        raise NotFound(f"no published API with id {shown_ref(api_id.strip())}")

    async def api_document(self, api_id: str) -> ApiDocument:
        entry = await self.catalog_entry(api_id)
        return await self._documents.get_document(entry.api.id)

    # Applications

    async def create_application(
        self, account_id: str, name: str, description: str = ""
    ) -> store_pb2.Application:
        application = store_pb2.Application(name=name, owner=account_id, description=description)
        request = store_pb2.CreateApplicationRequest(application=application)
        response = await self._admin.call(
            self._admin.store.CreateApplication, request, store_pb2.CreateApplicationResponse
        )
        return response.application

    async def application(self, account_id: str, application_id: str) -> store_pb2.Application:
        response = await self._admin.call(
            self._admin.store.GetApplication,
            store_pb2.GetApplicationRequest(id=application_id),
            store_pb2.GetApplicationResponse,
        )
        if response.application.owner != account_id:
            raise _application_missing(application_id)
        return response.application

    async def applications(
        self, account_id: str, include_deleted: bool = False
    ) -> list[store_pb2.Application]:
        request = store_pb2.ListApplicationsRequest(owner=account_id, include_deleted=include_deleted)
        response = await self._admin.call(
            self._admin.store.ListApplications, request, store_pb2.ListApplicationsResponse
        )
        # The filter is the admin service's; checked again, since it is what isolation rests on.
        return [a for a in response.applications if a.owner == account_id]

    async def update_application(
        self, account_id: str, application_id: str, changes: Mapping[str, str]
    ) -> store_pb2.Application:
        unknown = sorted(set(changes) - {"name", "description"})
        if unknown:
            raise InvalidArgument(f"cannot update application fields: {', '.join(unknown)}")
        if not changes:
            raise InvalidArgument("nothing to update: give a name or a description")
        current = await self.application(account_id, application_id)
        application = store_pb2.Application(
            id=current.id, name=changes.get("name", ""), description=changes.get("description", "")
        )
        request = store_pb2.UpdateApplicationRequest(
            application=application, update_mask=FieldMask(paths=sorted(changes))
        )
        response = await self._admin.call(
            self._admin.store.UpdateApplication, request, store_pb2.UpdateApplicationResponse
        )
        return response.application

    async def delete_application(self, account_id: str, application_id: str) -> None:
        current = await self.application(account_id, application_id)
        await self._admin.call(
            self._admin.store.DeleteApplication,
            store_pb2.DeleteApplicationRequest(id=current.id),
            store_pb2.DeleteApplicationResponse,
        )

    async def _owned_ids(self, account_id: str) -> set[str]:
        return {a.id for a in await self.applications(account_id, include_deleted=True)}

    # Subscriptions

    async def subscribe(
        self, account_id: str, application_id: str, api: str, plan: str
    ) -> store_pb2.Subscription:
        if not application_id.strip():
            raise InvalidArgument("application_id is required")
        application = await self.application(account_id, application_id)
        request = store_pb2.CreateSubscriptionRequest(application_id=application.id, api_id=api, plan_id=plan)
        response = await self._admin.call(
            self._admin.store.CreateSubscription, request, store_pb2.CreateSubscriptionResponse
        )
        return response.subscription

    async def subscription(self, account_id: str, subscription_id: str) -> store_pb2.Subscription:
        response = await self._admin.call(
            self._admin.store.GetSubscription,
            store_pb2.GetSubscriptionRequest(id=subscription_id),
            store_pb2.GetSubscriptionResponse,
        )
        if response.subscription.application_id not in await self._owned_ids(account_id):
            raise NotFound(f"subscription {shown_ref(subscription_id.strip())} not found")
        return response.subscription

    async def subscriptions(self, account_id: str, application_id: str = "") -> list[store_pb2.Subscription]:
        if application_id.strip():
            ids = {(await self.application(account_id, application_id)).id}
        else:
            ids = await self._owned_ids(account_id)
        found: list[store_pb2.Subscription] = []
        for owned in sorted(ids):
            response = await self._admin.call(
                self._admin.store.ListSubscriptions,
                store_pb2.ListSubscriptionsRequest(application_id=owned),
                store_pb2.ListSubscriptionsResponse,
            )
            found.extend(s for s in response.subscriptions if s.application_id == owned)
        return sorted(found, key=lambda s: (s.create_time.ToDatetime(), s.id))

    async def cancel_subscription(self, account_id: str, subscription_id: str) -> store_pb2.Subscription:
        current = await self.subscription(account_id, subscription_id)
        response = await self._admin.call(
            self._admin.store.CancelSubscription,
            store_pb2.CancelSubscriptionRequest(id=current.id),
            store_pb2.CancelSubscriptionResponse,
        )
        return response.subscription

    # API keys

    async def create_key(
        self, account_id: str, application_id: str, name: str = "", ttl: timedelta | None = None
    ) -> store_pb2.CreateApiKeyResponse:
        if not application_id.strip():
            raise InvalidArgument("application_id is required")
        application = await self.application(account_id, application_id)
        request = store_pb2.CreateApiKeyRequest(application_id=application.id, name=name)
        if ttl is not None:
            request.ttl.CopyFrom(_duration(ttl))
        return await self._admin.call(self._admin.store.CreateApiKey, request, store_pb2.CreateApiKeyResponse)

    async def key(self, account_id: str, key_id: str) -> store_pb2.ApiKey:
        response = await self._admin.call(
            self._admin.store.GetApiKey,
            store_pb2.GetApiKeyRequest(key_id=key_id),
            store_pb2.GetApiKeyResponse,
        )
        if response.api_key.application_id not in await self._owned_ids(account_id):
            raise NotFound(f"API key {key_id.strip()!r} not found")
        return response.api_key

    async def keys(self, account_id: str, application_id: str = "") -> list[store_pb2.ApiKey]:
        if application_id.strip():
            ids = {(await self.application(account_id, application_id)).id}
        else:
            ids = await self._owned_ids(account_id)
        found: list[store_pb2.ApiKey] = []
        for owned in sorted(ids):
            response = await self._admin.call(
                self._admin.store.ListApiKeys,
                store_pb2.ListApiKeysRequest(application_id=owned),
                store_pb2.ListApiKeysResponse,
            )
            found.extend(k for k in response.api_keys if k.application_id == owned)
        return sorted(found, key=lambda k: (k.create_time.ToDatetime(), k.key_id))

    async def rotate_key(
        self, account_id: str, key_id: str, grace: timedelta | None = None
    ) -> store_pb2.RotateApiKeyResponse:
        current = await self.key(account_id, key_id)
        request = store_pb2.RotateApiKeyRequest(key_id=current.key_id)
        if grace is not None:
            request.grace_period.CopyFrom(_duration(grace))
        return await self._admin.call(self._admin.store.RotateApiKey, request, store_pb2.RotateApiKeyResponse)

    async def revoke_key(self, account_id: str, key_id: str) -> store_pb2.ApiKey:
        current = await self.key(account_id, key_id)
        response = await self._admin.call(
            self._admin.store.RevokeApiKey,
            store_pb2.RevokeApiKeyRequest(key_id=current.key_id),
            store_pb2.RevokeApiKeyResponse,
        )
        return response.api_key

    # Usage and quota

    async def usage_windows(
        self,
        account_id: str,
        *,
        subscription_id: str = "",
        application_id: str = "",
        granularity: usage_pb2.Granularity = usage_pb2.GRANULARITY_HOUR,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[usage_pb2.UsageWindow]:
        if granularity not in DEFAULT_SPAN:
            raise InvalidArgument("granularity must be MINUTE, HOUR or DAY")
        if subscription_id.strip():
            usage_filter = usage_pb2.UsageFilter(
                subscription_id=(await self.subscription(account_id, subscription_id)).id
            )
        elif application_id.strip():
            usage_filter = usage_pb2.UsageFilter(
                application_id=(await self.application(account_id, application_id)).id
            )
        else:
            raise InvalidArgument("subscription_id or application_id is required")
        end = end or self._clock()
        start = start or end - DEFAULT_SPAN[granularity]
        if start >= end:
            raise InvalidArgument("start_time must be before end_time")
        windows: list[usage_pb2.UsageWindow] = []
        token = ""
        while len(windows) < MAX_USAGE_WINDOWS:
            request = usage_pb2.ListUsageWindowsRequest(
                granularity=granularity,
                start_time=timestamp(start),
                end_time=timestamp(end),
                filter=usage_filter,
                page_size=_USAGE_PAGE,
                page_token=token,
            )
            response = await self._admin.call(
                self._admin.usage.ListUsageWindows, request, usage_pb2.ListUsageWindowsResponse
            )
            windows.extend(response.windows)
            token = response.next_page_token
            if not token:
                break
        return windows[:MAX_USAGE_WINDOWS]

    async def quota(self, account_id: str, subscription_id: str) -> throttle_pb2.GetSubscriptionQuotaResponse:
        current = await self.subscription(account_id, subscription_id)
        return await self._admin.call(
            self._admin.quota.GetSubscriptionQuota,
            throttle_pb2.GetSubscriptionQuotaRequest(subscription_id=current.id),
            throttle_pb2.GetSubscriptionQuotaResponse,
        )

    # Invoices

    async def invoices(self, account_id: str, application_id: str = "") -> list[billing_pb2.Invoice]:
        if application_id.strip():
            ids = {(await self.application(account_id, application_id)).id}
        else:
            ids = await self._owned_ids(account_id)
        found: list[billing_pb2.Invoice] = []
        for owned in sorted(ids):
            response = await self._admin.call(
                self._admin.billing.ListInvoices,
                billing_pb2.ListInvoicesRequest(application_id=owned),
                billing_pb2.ListInvoicesResponse,
            )
            found.extend(i for i in response.invoices if i.application_id == owned)
        return sorted(found, key=lambda i: (i.period_start.ToDatetime(), i.id), reverse=True)

    async def invoice(self, account_id: str, reference: str) -> billing_pb2.Invoice:
        response = await self._admin.call(
            self._admin.billing.GetInvoice,
            billing_pb2.GetInvoiceRequest(id=reference),
            billing_pb2.GetInvoiceResponse,
        )
        if response.invoice.application_id not in await self._owned_ids(account_id):
            raise NotFound(f"invoice {reference.strip()!r} not found")
        return response.invoice


def _duration(value: timedelta) -> Duration:
    proto = Duration()
    proto.FromTimedelta(value)
    return proto


__all__: Sequence[str] = ("CatalogEntry", "ConsumerPortal")

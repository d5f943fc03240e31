"""A consumer's money: spend caps on their own applications and subscriptions (set and cleared by the
consumer, as the issue promised once the portal existed), the alerts raised on them and their prepaid
credit. A part of ConsumerPortal (portal/consumer.py), kept apart to keep each module one subject.

Ownership is proven first (another account's ids answer NOT_FOUND, as missing ids do); then the call
goes to BillingService, so validation and messages are exactly accounting's."""

from __future__ import annotations

from portal.backend import AdminServices
from tollway.billing.v1 import billing_pb2
from tollway.errors import InvalidArgument
from tollway.store.v1 import store_pb2

# Caps are per application or subscription; these are BillingService's scope names.
APPLICATION, SUBSCRIPTION = "APPLICATION", "SUBSCRIPTION"
DEFAULT_LIMIT = 100


class ConsumerMoney:
    """Mixed into ConsumerPortal, which provides the admin services and the ownership checks."""

    _admin: AdminServices

    async def application(self, account_id: str, application_id: str) -> store_pb2.Application:
        raise NotImplementedError

    async def subscription(self, account_id: str, subscription_id: str) -> store_pb2.Subscription:
        raise NotImplementedError

    async def subscriptions(self, account_id: str, application_id: str = "") -> list[store_pb2.Subscription]:
        raise NotImplementedError

    async def _own_target(self, account_id: str, scope: str, target_id: str) -> None:
        """NOT_FOUND unless the target is the account's. An unknown scope or an empty id is left to
        BillingService, which refuses it with its own message before looking at the target."""
        if not target_id.strip():
            return
        if scope == APPLICATION:
            await self.application(account_id, target_id)
        elif scope == SUBSCRIPTION:
            await self.subscription(account_id, target_id)

    async def set_spend_cap(self, account_id: str, cap: billing_pb2.SpendCap) -> billing_pb2.SpendCap:
        scope = cap.scope.strip().upper()
        await self._own_target(account_id, scope, cap.target_id)
        request = billing_pb2.SetSpendCapRequest(cap=cap)
        response = await self._admin.call(
            self._admin.billing.SetSpendCap, request, billing_pb2.SetSpendCapResponse
        )
        return response.cap

    async def clear_spend_cap(self, account_id: str, scope: str, target_id: str, kind: str) -> bool:
        await self._own_target(account_id, scope.strip().upper(), target_id)
        request = billing_pb2.ClearSpendCapRequest(scope=scope, target_id=target_id, kind=kind)
        response = await self._admin.call(
            self._admin.billing.ClearSpendCap, request, billing_pb2.ClearSpendCapResponse
        )
        return response.cleared

    async def _targets(
        self, account_id: str, application_id: str, subscription_id: str
    ) -> list[tuple[str, str]]:
        """(scope, id) of an application and its subscriptions, or of one subscription."""
        if application_id.strip() and subscription_id.strip():
            raise InvalidArgument("give application_id or subscription_id, not both")
        if subscription_id.strip():
            return [(SUBSCRIPTION, (await self.subscription(account_id, subscription_id)).id)]
        if not application_id.strip():
            raise InvalidArgument("application_id or subscription_id is required")
        application = await self.application(account_id, application_id)
        subs = await self.subscriptions(account_id, application.id)
        return [(APPLICATION, application.id)] + [(SUBSCRIPTION, s.id) for s in subs]

    async def spend_caps(
        self, account_id: str, application_id: str = "", subscription_id: str = ""
    ) -> list[billing_pb2.SpendCap]:
        caps: list[billing_pb2.SpendCap] = []
        for scope, target_id in await self._targets(account_id, application_id, subscription_id):
            request = billing_pb2.ListSpendCapsRequest(scope=scope, target_id=target_id)
            response = await self._admin.call(
                self._admin.billing.ListSpendCaps, request, billing_pb2.ListSpendCapsResponse
            )
            caps.extend(c for c in response.caps if (c.scope, c.target_id) == (scope, target_id))
        return caps

    async def alerts(
        self, account_id: str, application_id: str = "", subscription_id: str = "", limit: int = 0
    ) -> list[billing_pb2.Alert]:
        if limit < 0:
            raise InvalidArgument("limit must not be negative")
        found: list[billing_pb2.Alert] = []
        for scope, target_id in await self._targets(account_id, application_id, subscription_id):
            request = billing_pb2.ListAlertsRequest(
                scope=scope, target_id=target_id, limit=min(limit or DEFAULT_LIMIT, 1000)
            )
            response = await self._admin.call(
                self._admin.billing.ListAlerts, request, billing_pb2.ListAlertsResponse
            )
            found.extend(a for a in response.alerts if (a.scope, a.target_id) == (scope, target_id))
        return sorted(found, key=lambda a: (a.raise_time.ToDatetime(), a.id), reverse=True)

    async def credit(
        self, account_id: str, application_id: str, limit: int = 0
    ) -> tuple[list[billing_pb2.CreditBalance], list[billing_pb2.CreditEntry]]:
        """An application's balances and its ledger (newest first, at most `limit`)."""
        if limit < 0:
            raise InvalidArgument("limit must not be negative")
        application = await self.application(account_id, application_id)
        balances = await self._admin.call(
            self._admin.billing.GetCreditBalance,
            billing_pb2.GetCreditBalanceRequest(application_id=application.id),
            billing_pb2.GetCreditBalanceResponse,
        )
        entries = await self._admin.call(
            self._admin.billing.ListCreditEntries,
            billing_pb2.ListCreditEntriesRequest(
                application_id=application.id, limit=min(limit or DEFAULT_LIMIT, 1000)
            ),
            billing_pb2.ListCreditEntriesResponse,
        )
        return list(balances.balances), list(entries.entries)

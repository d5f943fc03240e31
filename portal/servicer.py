"""tollway.portal.v1 over gRPC: thin servicers over portal/auth.py and portal/consumer.py (the service
layer the web pages use too). AccountService and ConsumerService are served on the consumer port, where
each call carries its session as `authorization: Bearer <token>`; PortalAdminService on the admin port."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import grpc

from portal.accounts import SessionKind
from portal.auth import AccountService, Principal
from portal.consumer import ConsumerPortal
from portal.errors import Unauthenticated
from tollway.catalog.servicer import document_to_proto
from tollway.errors import InvalidArgument, map_grpc_errors
from tollway.portal.v1 import portal_pb2 as pb
from tollway.portal.v1 import portal_pb2_grpc
from tollway.protoconv import duration, mask_fields, timestamp, to_datetime
from tollway.schema_portal import PortalAccount
from tollway.usage.v1 import usage_pb2

Context = grpc.aio.ServicerContext[Any, Any]


def account_to_proto(account: PortalAccount) -> pb.Account:
    return pb.Account(
        id=account.id,
        email=account.email,
        display_name=account.display_name,
        create_time=timestamp(account.created_at),
        disable_time=timestamp(account.disabled_at),
        disabled_reason=account.disabled_reason,
    )


def optional_duration(request: Any, field: str) -> timedelta | None:
    """None when the Duration field is unset ("unset" and "zero" differ: a zero grace ends at once)."""
    if not request.HasField(field):
        return None
    try:
        return duration(getattr(request, field), field)
    except OverflowError:
        raise InvalidArgument(f"{field} is out of range") from None


def bearer_token(context: Context) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else str(value)
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return ""


def peer_address(context: Context) -> str:
    """The caller's address without its port: "ipv4:1.2.3.4:5" → "1.2.3.4", "ipv6:[::1]:5" → "::1"."""
    peer = context.peer() or ""
    _, _, rest = peer.partition(":")
    host = rest.rsplit(":", 1)[0] if rest.count(":") >= 1 else rest
    return host.strip("[]") or peer


async def consumer(accounts: AccountService, context: Context) -> Principal:
    principal = await accounts.authenticate(bearer_token(context))
    if principal is None or principal.kind is not SessionKind.CONSUMER or principal.account is None:
        raise Unauthenticated("sign in first: send `authorization: Bearer <session token>` from SignIn")
    return principal


@map_grpc_errors
class AccountServicer(portal_pb2_grpc.AccountServiceServicer):
    def __init__(self, accounts: AccountService) -> None:
        self._accounts = accounts

    async def SignUp(self, request: pb.SignUpRequest, context: Context) -> pb.SignUpResponse:
        session = await self._accounts.sign_up(request.email, request.password, request.display_name)
        account = await self._accounts.find_account(session.account_id)
        return pb.SignUpResponse(account=account_to_proto(account), session_token=session.token)

    async def SignIn(self, request: pb.SignInRequest, context: Context) -> pb.SignInResponse:
        session = await self._accounts.sign_in(request.email, request.password, peer_address(context))
        account = await self._accounts.find_account(session.account_id)
        return pb.SignInResponse(account=account_to_proto(account), session_token=session.token)

    async def SignOut(self, request: pb.SignOutRequest, context: Context) -> pb.SignOutResponse:
        principal = await consumer(self._accounts, context)
        await self._accounts.sign_out(principal.session_token)
        return pb.SignOutResponse()

    async def GetAccount(self, request: pb.GetAccountRequest, context: Context) -> pb.GetAccountResponse:
        principal = await consumer(self._accounts, context)
        assert principal.account is not None
        return pb.GetAccountResponse(account=account_to_proto(principal.account))

    async def RequestPasswordReset(
        self, request: pb.RequestPasswordResetRequest, context: Context
    ) -> pb.RequestPasswordResetResponse:
        await self._accounts.request_password_reset(request.email)
        return pb.RequestPasswordResetResponse()

    async def ResetPassword(
        self, request: pb.ResetPasswordRequest, context: Context
    ) -> pb.ResetPasswordResponse:
        await self._accounts.reset_password(request.token, request.new_password)
        return pb.ResetPasswordResponse()


@map_grpc_errors
class ConsumerServicer(portal_pb2_grpc.ConsumerServiceServicer):
    def __init__(self, accounts: AccountService, portal: ConsumerPortal) -> None:
        self._accounts = accounts
        self._portal = portal

    async def _account_id(self, context: Context) -> str:
        return (await consumer(self._accounts, context)).account_id

    async def ListCatalog(self, request: pb.ListCatalogRequest, context: Context) -> pb.ListCatalogResponse:
        await self._account_id(context)
        entries = await self._portal.catalog()
        return pb.ListCatalogResponse(
            apis=[pb.CatalogApi(api=e.api, plans=e.plans, has_document=e.has_document) for e in entries]
        )

    async def GetApiDocument(
        self, request: pb.GetApiDocumentRequest, context: Context
    ) -> pb.GetApiDocumentResponse:
        await self._account_id(context)
        return pb.GetApiDocumentResponse(
            document=document_to_proto(await self._portal.api_document(request.api_id))
        )

    async def CreateApplication(
        self, request: pb.CreateApplicationRequest, context: Context
    ) -> pb.CreateApplicationResponse:
        account_id = await self._account_id(context)
        created = await self._portal.create_application(account_id, request.name, request.description)
        return pb.CreateApplicationResponse(application=created)

    async def GetApplication(
        self, request: pb.GetApplicationRequest, context: Context
    ) -> pb.GetApplicationResponse:
        account_id = await self._account_id(context)
        return pb.GetApplicationResponse(application=await self._portal.application(account_id, request.id))

    async def ListApplications(
        self, request: pb.ListApplicationsRequest, context: Context
    ) -> pb.ListApplicationsResponse:
        account_id = await self._account_id(context)
        found = await self._portal.applications(account_id, request.include_deleted)
        return pb.ListApplicationsResponse(applications=found)

    async def UpdateApplication(
        self, request: pb.UpdateApplicationRequest, context: Context
    ) -> pb.UpdateApplicationResponse:
        account_id = await self._account_id(context)
        fields = mask_fields(request.update_mask, ("name", "description"))
        changes = {name: str(getattr(request, name)) for name in fields}
        updated = await self._portal.update_application(account_id, request.id, changes)
        return pb.UpdateApplicationResponse(application=updated)

    async def DeleteApplication(
        self, request: pb.DeleteApplicationRequest, context: Context
    ) -> pb.DeleteApplicationResponse:
        await self._portal.delete_application(await self._account_id(context), request.id)
        return pb.DeleteApplicationResponse()

    async def CreateSubscription(
        self, request: pb.CreateSubscriptionRequest, context: Context
    ) -> pb.CreateSubscriptionResponse:
        account_id = await self._account_id(context)
        created = await self._portal.subscribe(
            account_id, request.application_id, request.api_id, request.plan_id
        )
        return pb.CreateSubscriptionResponse(subscription=created)

    async def GetSubscription(
        self, request: pb.GetSubscriptionRequest, context: Context
    ) -> pb.GetSubscriptionResponse:
        account_id = await self._account_id(context)
        return pb.GetSubscriptionResponse(
            subscription=await self._portal.subscription(account_id, request.id)
        )

    async def ListSubscriptions(
        self, request: pb.ListSubscriptionsRequest, context: Context
    ) -> pb.ListSubscriptionsResponse:
        account_id = await self._account_id(context)
        found = await self._portal.subscriptions(account_id, request.application_id)
        return pb.ListSubscriptionsResponse(subscriptions=found)

    async def CancelSubscription(
        self, request: pb.CancelSubscriptionRequest, context: Context
    ) -> pb.CancelSubscriptionResponse:
        account_id = await self._account_id(context)
        cancelled = await self._portal.cancel_subscription(account_id, request.id)
        return pb.CancelSubscriptionResponse(subscription=cancelled)

    async def CreateApiKey(
        self, request: pb.CreateApiKeyRequest, context: Context
    ) -> pb.CreateApiKeyResponse:
        account_id = await self._account_id(context)
        ttl = optional_duration(request, "ttl")
        issued = await self._portal.create_key(account_id, request.application_id, request.name, ttl)
        return pb.CreateApiKeyResponse(api_key=issued.api_key, key=issued.key)

    async def GetApiKey(self, request: pb.GetApiKeyRequest, context: Context) -> pb.GetApiKeyResponse:
        account_id = await self._account_id(context)
        return pb.GetApiKeyResponse(api_key=await self._portal.key(account_id, request.key_id))

    async def ListApiKeys(self, request: pb.ListApiKeysRequest, context: Context) -> pb.ListApiKeysResponse:
        account_id = await self._account_id(context)
        return pb.ListApiKeysResponse(api_keys=await self._portal.keys(account_id, request.application_id))

    async def RotateApiKey(
        self, request: pb.RotateApiKeyRequest, context: Context
    ) -> pb.RotateApiKeyResponse:
        account_id = await self._account_id(context)
        grace = optional_duration(request, "grace_period")
        rotated = await self._portal.rotate_key(account_id, request.key_id, grace)
        return pb.RotateApiKeyResponse(
            api_key=rotated.api_key, key=rotated.key, previous_api_key=rotated.previous_api_key
        )

    async def RevokeApiKey(
        self, request: pb.RevokeApiKeyRequest, context: Context
    ) -> pb.RevokeApiKeyResponse:
        account_id = await self._account_id(context)
        return pb.RevokeApiKeyResponse(api_key=await self._portal.revoke_key(account_id, request.key_id))

    async def ListUsageWindows(
        self, request: pb.ListUsageWindowsRequest, context: Context
    ) -> pb.ListUsageWindowsResponse:
        account_id = await self._account_id(context)
        windows = await self._portal.usage_windows(
            account_id,
            subscription_id=request.subscription_id,
            application_id=request.application_id,
            granularity=request.granularity or usage_pb2.GRANULARITY_HOUR,
            start=to_datetime(request.start_time, "start_time") if request.HasField("start_time") else None,
            end=to_datetime(request.end_time, "end_time") if request.HasField("end_time") else None,
        )
        return pb.ListUsageWindowsResponse(windows=windows)

    async def GetQuota(self, request: pb.GetQuotaRequest, context: Context) -> pb.GetQuotaResponse:
        account_id = await self._account_id(context)
        return pb.GetQuotaResponse(quota=await self._portal.quota(account_id, request.subscription_id))

    async def ListInvoices(
        self, request: pb.ListInvoicesRequest, context: Context
    ) -> pb.ListInvoicesResponse:
        account_id = await self._account_id(context)
        return pb.ListInvoicesResponse(
            invoices=await self._portal.invoices(account_id, request.application_id)
        )

    async def GetInvoice(self, request: pb.GetInvoiceRequest, context: Context) -> pb.GetInvoiceResponse:
        account_id = await self._account_id(context)
        return pb.GetInvoiceResponse(invoice=await self._portal.invoice(account_id, request.id))

    async def SetSpendCap(self, request: pb.SetSpendCapRequest, context: Context) -> pb.SetSpendCapResponse:
        account_id = await self._account_id(context)
        return pb.SetSpendCapResponse(cap=await self._portal.set_spend_cap(account_id, request.cap))

    async def ClearSpendCap(
        self, request: pb.ClearSpendCapRequest, context: Context
    ) -> pb.ClearSpendCapResponse:
        account_id = await self._account_id(context)
        cleared = await self._portal.clear_spend_cap(
            account_id, request.scope, request.target_id, request.kind
        )
        return pb.ClearSpendCapResponse(cleared=cleared)

    async def ListSpendCaps(
        self, request: pb.ListSpendCapsRequest, context: Context
    ) -> pb.ListSpendCapsResponse:
        account_id = await self._account_id(context)
        caps = await self._portal.spend_caps(account_id, request.application_id, request.subscription_id)
        return pb.ListSpendCapsResponse(caps=caps)

    async def ListAlerts(self, request: pb.ListAlertsRequest, context: Context) -> pb.ListAlertsResponse:
        account_id = await self._account_id(context)
        alerts = await self._portal.alerts(
            account_id, request.application_id, request.subscription_id, request.limit
        )
        return pb.ListAlertsResponse(alerts=alerts)

    async def GetCredit(self, request: pb.GetCreditRequest, context: Context) -> pb.GetCreditResponse:
        account_id = await self._account_id(context)
        balances, entries = await self._portal.credit(account_id, request.application_id, request.limit)
        return pb.GetCreditResponse(balances=balances, entries=entries)


@map_grpc_errors
class PortalAdminServicer(portal_pb2_grpc.PortalAdminServiceServicer):
    def __init__(self, accounts: AccountService) -> None:
        self._accounts = accounts

    async def ListAccounts(
        self, request: pb.ListAccountsRequest, context: Context
    ) -> pb.ListAccountsResponse:
        accounts = await self._accounts.store.list_accounts()
        return pb.ListAccountsResponse(accounts=[account_to_proto(a) for a in accounts])

    async def DisableAccount(
        self, request: pb.DisableAccountRequest, context: Context
    ) -> pb.DisableAccountResponse:
        account = await self._accounts.set_disabled(request.account, True, request.reason)
        return pb.DisableAccountResponse(account=account_to_proto(account))

    async def EnableAccount(
        self, request: pb.EnableAccountRequest, context: Context
    ) -> pb.EnableAccountResponse:
        account = await self._accounts.set_disabled(request.account, False)
        return pb.EnableAccountResponse(account=account_to_proto(account))

"""BillingAccountService (admin port, bearer token): billing accounts, which applications they own,
tax rates. Thin protobuf <-> billing/accounts.py translation; also what an Invoice message carries of
its account and taxes (used by billing/servicer.py)."""

from __future__ import annotations

from typing import Any

import grpc

from billing.accounts import AccountChanges, AccountStore, AccountView
from billing.invoice_records import InvoiceView
from tollway.billing.v1 import accounts_pb2 as pb
from tollway.billing.v1 import accounts_pb2_grpc
from tollway.errors import map_grpc_errors
from tollway.protoconv import timestamp
from tollway.schema_billing import CreditNote, TaxRate

Context = grpc.aio.ServicerContext[Any, Any]


def tax_rate_to_proto(row: TaxRate) -> pb.TaxRate:
    return pb.TaxRate(
        id=row.id,
        billing_account_id=row.billing_account_id,
        plan_id=row.plan_id,
        name=row.name,
        rate=row.rate,
        inclusive=row.inclusive,
        create_time=timestamp(row.created_at),
    )


def account_to_proto(view: AccountView) -> pb.BillingAccount:
    account = view.account
    return pb.BillingAccount(
        id=account.id,
        name=account.name,
        email=account.email,
        address=account.address,
        tax_id=account.tax_id,
        application_ids=view.application_ids,
        tax_rates=[tax_rate_to_proto(rate) for rate in view.tax_rates],
        create_time=timestamp(account.created_at),
        update_time=timestamp(account.updated_at),
    )


def invoice_account_fields(view: InvoiceView) -> dict[str, Any]:
    """The Invoice message's subtotal, taxes and customer."""
    inv = view.invoice
    customer = view.customer
    return {
        "subtotal": inv.subtotal,
        "tax_total": inv.tax_total,
        "taxes": [
            pb.InvoiceTax(
                tax_rate_id=tax.tax_rate_id,
                name=tax.name,
                rate=tax.rate,
                inclusive=tax.inclusive,
                taxable=tax.taxable,
                amount=tax.amount,
            )
            for tax in view.taxes
        ],
        "customer": pb.Customer(
            billing_account_id=customer.get("billing_account_id", ""),
            name=customer.get("name", ""),
            email=customer.get("email", ""),
            address=customer.get("address", ""),
            tax_id=customer.get("tax_id", ""),
        )
        if customer
        else None,
    }


def credit_note_tax_fields(note: CreditNote) -> dict[str, Any]:
    """The CreditNote message's subtotal and taxes."""
    return {
        "subtotal": note.subtotal or note.total,  # notes from before taxes: their lines' sum
        "tax_total": note.tax_total,
        "taxes": [pb.InvoiceTax(**tax) for tax in note.taxes],
    }


def _optional(request: Any, name: str) -> str | None:
    return getattr(request, name) if request.HasField(name) else None


@map_grpc_errors
class BillingAccountServicer(accounts_pb2_grpc.BillingAccountServiceServicer):
    def __init__(self, accounts: AccountStore) -> None:
        self._accounts = accounts

    async def CreateBillingAccount(
        self, request: pb.CreateBillingAccountRequest, context: Context
    ) -> pb.CreateBillingAccountResponse:
        view = await self._accounts.create(request.name, request.email, request.address, request.tax_id)
        return pb.CreateBillingAccountResponse(billing_account=account_to_proto(view))

    async def GetBillingAccount(
        self, request: pb.GetBillingAccountRequest, context: Context
    ) -> pb.GetBillingAccountResponse:
        view = await self._accounts.get(request.id)
        return pb.GetBillingAccountResponse(billing_account=account_to_proto(view))

    async def ListBillingAccounts(
        self, request: pb.ListBillingAccountsRequest, context: Context
    ) -> pb.ListBillingAccountsResponse:
        views = await self._accounts.list_accounts()
        return pb.ListBillingAccountsResponse(billing_accounts=[account_to_proto(v) for v in views])

    async def UpdateBillingAccount(
        self, request: pb.UpdateBillingAccountRequest, context: Context
    ) -> pb.UpdateBillingAccountResponse:
        changes = AccountChanges(
            _optional(request, "name"), _optional(request, "email"), _optional(request, "address"),
            _optional(request, "tax_id"),
        )  # fmt: skip
        view = await self._accounts.update(request.id, changes)
        return pb.UpdateBillingAccountResponse(billing_account=account_to_proto(view))

    async def DeleteBillingAccount(
        self, request: pb.DeleteBillingAccountRequest, context: Context
    ) -> pb.DeleteBillingAccountResponse:
        await self._accounts.delete(request.id)
        return pb.DeleteBillingAccountResponse()

    async def SetApplicationBillingAccount(
        self, request: pb.SetApplicationBillingAccountRequest, context: Context
    ) -> pb.SetApplicationBillingAccountResponse:
        account = await self._accounts.assign_application(request.application_id, request.billing_account_id)
        return pb.SetApplicationBillingAccountResponse(
            application_id=request.application_id.strip(), billing_account_id=account
        )

    async def CreateTaxRate(
        self, request: pb.CreateTaxRateRequest, context: Context
    ) -> pb.CreateTaxRateResponse:
        row = await self._accounts.add_tax_rate(
            request.name, request.rate, request.inclusive, request.billing_account_id, request.plan_id
        )
        return pb.CreateTaxRateResponse(tax_rate=tax_rate_to_proto(row))

    async def ListTaxRates(
        self, request: pb.ListTaxRatesRequest, context: Context
    ) -> pb.ListTaxRatesResponse:
        rows = await self._accounts.list_tax_rates(request.billing_account_id, request.plan_id)
        return pb.ListTaxRatesResponse(tax_rates=[tax_rate_to_proto(row) for row in rows])

    async def DeleteTaxRate(
        self, request: pb.DeleteTaxRateRequest, context: Context
    ) -> pb.DeleteTaxRateResponse:
        await self._accounts.delete_tax_rate(request.id)
        return pb.DeleteTaxRateResponse()

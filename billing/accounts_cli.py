"""`tollway billing account ...` and `tollway billing tax ...`: billing accounts, the applications they
own and tax rates, over BillingAccountService (JSON on stdout). Every command names what it acts on
with an option: --account, --application, --plan, --tax-rate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from tollway.billing.v1 import accounts_pb2 as pb
from tollway.cli_support import DEFAULT_ADMIN_ADDR, AdminAddr, AdminToken, Output, admin_client, emit

if TYPE_CHECKING:
    import grpc

    from tollway.billing.v1.accounts_pb2_grpc import BillingAccountServiceStub


def _account_service_stub(channel: grpc.Channel) -> BillingAccountServiceStub:
    """The stub, imported on first use: gRPC's import is paid by a call, not by `tollway --help`."""
    from tollway.billing.v1.accounts_pb2_grpc import BillingAccountServiceStub

    return BillingAccountServiceStub(channel)


AccountOpt = Annotated[str, typer.Option("--account", help="Billing account id (acct_...).")]
NameOpt = Annotated[str | None, typer.Option("--name", help="Customer name as printed on invoices.")]
EmailOpt = Annotated[str | None, typer.Option("--email", help="Where invoices go, e.g. billing@example.com.")]
TaxIdOpt = Annotated[str | None, typer.Option("--tax-id", help="VAT number, EIN, ... e.g. DE123456789.")]
AddressOpt = Annotated[
    list[str] | None,
    typer.Option("--address", help="Postal address; repeat the option for each line."),
]

ScopeAccount = Annotated[str, typer.Option("--account", help="Billing account id.")]
ScopePlan = Annotated[str, typer.Option("--plan", help="Plan id.")]


def _address(lines: list[str] | None) -> str | None:
    return None if lines is None else "\n".join(lines)


def account_commands() -> typer.Typer:
    app = typer.Typer(help="Billing accounts: whom invoices are addressed to.", no_args_is_help=True)

    @app.command()
    def create(
        name: Annotated[str, typer.Option("--name", help="Customer name as printed on invoices.")],
        email: EmailOpt = None, address: AddressOpt = None, tax_id: TaxIdOpt = None,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None,
    ) -> None:  # fmt: skip
        """A new billing account."""
        request = pb.CreateBillingAccountRequest(
            name=name, email=email or "", address=_address(address) or "", tax_id=tax_id or ""
        )
        with admin_client(addr, token, _account_service_stub) as client:
            emit(client.call(client.service.CreateBillingAccount, request))

    @app.command("list")
    def list_(addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None) -> None:
        """Every billing account with its applications and tax rates."""
        with admin_client(addr, token, _account_service_stub) as client:
            emit(client.call(client.service.ListBillingAccounts, pb.ListBillingAccountsRequest()))

    @app.command()
    def show(
        account: AccountOpt,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
        output: Output = None,
    ) -> None:
        """One billing account."""
        with admin_client(addr, token, _account_service_stub) as client:
            emit(client.call(client.service.GetBillingAccount, pb.GetBillingAccountRequest(id=account)))

    @app.command()
    def update(
        account: AccountOpt, name: NameOpt = None, email: EmailOpt = None, address: AddressOpt = None,
        tax_id: TaxIdOpt = None, addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None,
        output: Output = None,
    ) -> None:  # fmt: skip
        """Changes the given fields (drafts show them; finalized invoices keep theirs)."""
        fields = {"name": name, "email": email, "address": _address(address), "tax_id": tax_id}
        changes = {key: value for key, value in fields.items() if value is not None}
        if not changes:
            raise typer.BadParameter("nothing to update: pass --name, --email, --address or --tax-id")
        with admin_client(addr, token, _account_service_stub) as client:
            request = pb.UpdateBillingAccountRequest(id=account, **changes)
            emit(client.call(client.service.UpdateBillingAccount, request))

    @app.command()
    def delete(
        account: AccountOpt,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
        output: Output = None,
    ) -> None:
        """Deletes an account that owns no application."""
        with admin_client(addr, token, _account_service_stub) as client:
            emit(client.call(client.service.DeleteBillingAccount, pb.DeleteBillingAccountRequest(id=account)))

    @app.command()
    def assign(
        application: Annotated[str, typer.Option("--application", help="Application id.")],
        account: Annotated[
            str, typer.Option("--account", help="Billing account id; empty (--account '') clears it.")
        ],
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
        output: Output = None,
    ) -> None:
        """Addresses an application's invoices to a billing account."""
        request = pb.SetApplicationBillingAccountRequest(
            application_id=application, billing_account_id=account
        )
        with admin_client(addr, token, _account_service_stub) as client:
            emit(client.call(client.service.SetApplicationBillingAccount, request))

    return app


def tax_commands() -> typer.Typer:
    app = typer.Typer(
        help="Tax rates on a billing account or a plan (a plan's rates apply to its lines instead of the "
        "account's).",
        no_args_is_help=True,
    )

    @app.command()
    def add(
        name: Annotated[str, typer.Option("--name", help='As printed on invoices, e.g. "VAT 20%".')],
        rate: Annotated[str, typer.Option("--rate", help="Percent, e.g. 20 or 8.875.")],
        inclusive: Annotated[
            bool, typer.Option("--inclusive/--exclusive", help="Included in the prices, or added on top.")
        ] = False,
        account: ScopeAccount = "", plan: ScopePlan = "",
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None,
    ) -> None:  # fmt: skip
        """A tax rate on a billing account (--account) or a plan (--plan)."""
        request = pb.CreateTaxRateRequest(
            billing_account_id=account, plan_id=plan, name=name, rate=rate, inclusive=inclusive
        )
        with admin_client(addr, token, _account_service_stub) as client:
            emit(client.call(client.service.CreateTaxRate, request))

    @app.command("list")
    def list_(
        account: ScopeAccount = "", plan: ScopePlan = "",
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None,
    ) -> None:  # fmt: skip
        """Tax rates, of one account or plan if given."""
        request = pb.ListTaxRatesRequest(billing_account_id=account, plan_id=plan)
        with admin_client(addr, token, _account_service_stub) as client:
            emit(client.call(client.service.ListTaxRates, request))

    @app.command()
    def delete(
        tax_rate: Annotated[str, typer.Option("--tax-rate", help="Tax rate id (tax_...).")],
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
        output: Output = None,
    ) -> None:
        """Removes a tax rate (drafts lose it on their next run; finalized invoices keep theirs)."""
        with admin_client(addr, token, _account_service_stub) as client:
            emit(client.call(client.service.DeleteTaxRate, pb.DeleteTaxRateRequest(id=tax_rate)))

    return app


def add_account_commands(app: typer.Typer) -> None:
    app.add_typer(account_commands(), name="account")
    app.add_typer(tax_commands(), name="tax")

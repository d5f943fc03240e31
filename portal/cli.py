"""`tollway portal ...`: the publisher's commands for consumer accounts (PortalAdminService on the
admin port; connection options and exit codes from tollway.cli_support)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from tollway.cli_support import DEFAULT_ADMIN_ADDR, AdminAddr, AdminToken, Output, admin_client, emit
from tollway.portal.v1 import portal_pb2 as pb

if TYPE_CHECKING:
    import grpc

    from tollway.portal.v1.portal_pb2_grpc import PortalAdminServiceStub


def _portal_admin_service_stub(channel: grpc.Channel) -> PortalAdminServiceStub:
    """The stub, imported on first use: gRPC's import is paid by a call, not by `tollway --help`."""
    from tollway.portal.v1.portal_pb2_grpc import PortalAdminServiceStub

    return PortalAdminServiceStub(channel)


AccountRef = Annotated[str, typer.Argument(help="Account id (acct_...) or email.")]


def _commands() -> typer.Typer:
    portal_app = typer.Typer(help="The developer portal: consumer accounts.", no_args_is_help=True)
    accounts = typer.Typer(help="Consumer accounts.", no_args_is_help=True)
    portal_app.add_typer(accounts, name="account")

    @accounts.command("list")
    def list_accounts(
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None
    ) -> None:
        """Every consumer account."""
        with admin_client(addr, token, _portal_admin_service_stub) as portal:
            emit(portal.call(portal.service.ListAccounts, pb.ListAccountsRequest()))

    @accounts.command("disable")
    def disable(
        account: AccountRef,
        reason: Annotated[str, typer.Option(help="Why (shown to the account's owner).")] = "",
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
        output: Output = None,
    ) -> None:
        """End the account's sessions and block its applications (its keys refuse within a second)."""
        with admin_client(addr, token, _portal_admin_service_stub) as portal:
            request = pb.DisableAccountRequest(account=account, reason=reason)
            emit(portal.call(portal.service.DisableAccount, request))

    @accounts.command("enable")
    def enable(
        account: AccountRef,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
        output: Output = None,
    ) -> None:
        """Let the account sign in again and lift the blocks disabling made."""
        with admin_client(addr, token, _portal_admin_service_stub) as portal:
            emit(portal.call(portal.service.EnableAccount, pb.EnableAccountRequest(account=account)))

    return portal_app


def register(app: typer.Typer) -> None:
    app.add_typer(_commands(), name="portal")

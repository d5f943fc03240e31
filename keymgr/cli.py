"""`tollway app|sub|key|block ...`: keymgr's admin commands, thin typer wrappers over the StoreService
(applications, subscriptions, API keys, block rules; JSON on stdout, proto field names; connection
options and exit codes from `tollway.cli_support`)."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, cast

import typer
from google.protobuf.duration_pb2 import Duration

from tollway.cli_support import (
    DEFAULT_ADMIN_ADDR,
    AdminAddr,
    AdminToken,
    Output,
    admin_client,
    duration_param,
    duration_proto,
    emit,
    require_changes,
)
from tollway.store.v1 import store_pb2 as st

if TYPE_CHECKING:
    import grpc

    from tollway.store.v1.store_pb2_grpc import StoreServiceStub


def _store_service_stub(channel: grpc.Channel) -> StoreServiceStub:
    """The stub, imported on first use: gRPC's import is paid by a call, not by `tollway --help`."""
    from tollway.store.v1.store_pb2_grpc import StoreServiceStub

    return StoreServiceStub(channel)


Description = Annotated[str | None, typer.Option("--description")]


def _note_key_once() -> None:
    typer.echo("note: the full key is shown only once; store it now.", err=True)


# --------------------------------------------------------------------------------------------------
# app (applications)
# --------------------------------------------------------------------------------------------------

AppId = Annotated[str, typer.Argument(help="Application id.")]


def _app_commands() -> typer.Typer:
    app_app = typer.Typer(
        help="Applications: consumers that hold keys and subscriptions.", no_args_is_help=True
    )

    @app_app.command("create")
    def create(
        name: Annotated[str, typer.Argument(help="Application name.")],
        owner: Annotated[str, typer.Option("--owner", help="Owning developer or team.")] = "",
        description: Annotated[str, typer.Option("--description")] = "",
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
        output: Output = None,
    ) -> None:
        """Create an application."""
        application = st.Application(name=name, owner=owner, description=description)
        with admin_client(addr, token, _store_service_stub) as store:
            request = st.CreateApplicationRequest(application=application)
            emit(store.call(store.service.CreateApplication, request))

    @app_app.command("list")
    def list_(
        owner: Annotated[str, typer.Option("--owner", help="Only this owner's applications.")] = "",
        include_deleted: Annotated[bool, typer.Option("--include-deleted")] = False,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
        output: Output = None,
    ) -> None:
        """List applications."""
        request = st.ListApplicationsRequest(owner=owner, include_deleted=include_deleted)
        with admin_client(addr, token, _store_service_stub) as store:
            emit(store.call(store.service.ListApplications, request))

    @app_app.command("get")
    def get(
        application: AppId,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
        output: Output = None,
    ) -> None:
        """Show one application."""
        with admin_client(addr, token, _store_service_stub) as store:
            emit(store.call(store.service.GetApplication, st.GetApplicationRequest(id=application)))

    @app_app.command("update")
    def update(
        application: AppId,
        name: Annotated[str | None, typer.Option("--name")] = None,
        owner: Annotated[str | None, typer.Option("--owner")] = None,
        description: Description = None,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
        output: Output = None,
    ) -> None:
        """Change the given fields of an application."""
        changed = st.Application(id=application)
        mask: list[str] = []
        for field, value in (("name", name), ("owner", owner), ("description", description)):
            if value is not None:
                setattr(changed, field, value)
                mask.append(field)
        # An empty mask would mean "replace all three", so refuse it rather than blank fields.
        require_changes(mask)
        request = st.UpdateApplicationRequest(application=changed)
        request.update_mask.paths.extend(mask)
        with admin_client(addr, token, _store_service_stub) as store:
            emit(store.call(store.service.UpdateApplication, request))

    @app_app.command("delete")
    def delete(
        application: AppId,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
        output: Output = None,
    ) -> None:
        """Delete an application: revokes its keys and cancels its subscriptions."""
        with admin_client(addr, token, _store_service_stub) as store:
            emit(store.call(store.service.DeleteApplication, st.DeleteApplicationRequest(id=application)))

    return app_app


# --------------------------------------------------------------------------------------------------
# sub (subscriptions)
# --------------------------------------------------------------------------------------------------


class SubStateChoice(StrEnum):
    active = "active"
    pending_approval = "pending_approval"
    blocked = "blocked"
    suspended = "suspended"
    cancelled = "cancelled"
    rejected = "rejected"


SubId = Annotated[str, typer.Argument(help="Subscription id.")]


def _sub_commands() -> typer.Typer:
    sub_app = typer.Typer(help="Subscriptions: application x API x plan.", no_args_is_help=True)

    @sub_app.command("create")
    def create(
        application: AppId,
        api: Annotated[str, typer.Option("--api", help="API id or name.")],
        plan: Annotated[str, typer.Option("--plan", help="Plan id or name the API offers.")],
        anchor_day: Annotated[
            int,
            typer.Option(
                "--anchor-day", min=0, max=28, help="Day of month the billing period starts; 0 = calendar."
            ),
        ] = 0,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
        output: Output = None,
    ) -> None:
        """Subscribe an application to a published API under one of its plans."""
        request = st.CreateSubscriptionRequest(
            application_id=application, api_id=api, plan_id=plan, billing_anchor_day=anchor_day
        )
        with admin_client(addr, token, _store_service_stub) as store:
            emit(store.call(store.service.CreateSubscription, request))

    @sub_app.command("list")
    def list_(
        application: Annotated[str, typer.Option("--application", help="Application id.")] = "",
        api: Annotated[str, typer.Option("--api", help="API id.")] = "",
        state: Annotated[SubStateChoice | None, typer.Option("--state")] = None,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
        output: Output = None,
    ) -> None:
        """List subscriptions."""
        request = st.ListSubscriptionsRequest(application_id=application, api_id=api)
        if state is not None:
            # Value() is typed as a plain int; it is one of the enum's numbers.
            request.state = cast(
                "st.SubscriptionState",
                st.SubscriptionState.Value(f"SUBSCRIPTION_STATE_{state.value.upper()}"),
            )
        with admin_client(addr, token, _store_service_stub) as store:
            emit(store.call(store.service.ListSubscriptions, request))

    @sub_app.command("get")
    def get(
        subscription: SubId,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
        output: Output = None,
    ) -> None:
        """Show one subscription."""
        with admin_client(addr, token, _store_service_stub) as store:
            emit(store.call(store.service.GetSubscription, st.GetSubscriptionRequest(id=subscription)))

    @sub_app.command("block")
    def block(
        subscription: SubId,
        reason: Annotated[str, typer.Option("--reason")] = "",
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
        output: Output = None,
    ) -> None:
        """Block an active subscription (403 at the gateway)."""
        request = st.BlockSubscriptionRequest(id=subscription, reason=reason)
        with admin_client(addr, token, _store_service_stub) as store:
            emit(store.call(store.service.BlockSubscription, request))

    @sub_app.command("unblock")
    def unblock(
        subscription: SubId,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
        output: Output = None,
    ) -> None:
        """Unblock a blocked subscription."""
        with admin_client(addr, token, _store_service_stub) as store:
            emit(
                store.call(store.service.UnblockSubscription, st.UnblockSubscriptionRequest(id=subscription))
            )

    @sub_app.command("cancel")
    def cancel(
        subscription: SubId,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
        output: Output = None,
    ) -> None:
        """Cancel a subscription."""
        with admin_client(addr, token, _store_service_stub) as store:
            emit(store.call(store.service.CancelSubscription, st.CancelSubscriptionRequest(id=subscription)))

    return sub_app


# --------------------------------------------------------------------------------------------------
# key (API keys)
# --------------------------------------------------------------------------------------------------

KeyId = Annotated[str, typer.Argument(help="Key id (the part between the first two underscores).")]
Ttl = Annotated[
    timedelta | None,
    typer.Option(
        "--ttl",
        parser=duration_param,
        metavar="DURATION",
        help="Key lifetime, e.g. 30d; no expiry if unset.",
    ),
]


def _positive_ttl(ttl: timedelta | None) -> Duration | None:
    if ttl is None:
        return None
    if ttl <= timedelta(0):
        raise typer.BadParameter("--ttl must be longer than zero")
    return duration_proto(ttl)


def _key_commands() -> typer.Typer:
    key_app = typer.Typer(help="API keys: issued once, stored hashed.", no_args_is_help=True)

    @key_app.command("create")
    def create(
        application: AppId,
        name: Annotated[str, typer.Option("--name", help="Label for the key, e.g. ci.")] = "",
        ttl: Ttl = None,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
        output: Output = None,
    ) -> None:
        """Issue a key for an application; the full key is printed once."""
        request = st.CreateApiKeyRequest(application_id=application, name=name, ttl=_positive_ttl(ttl))
        with admin_client(addr, token, _store_service_stub) as store:
            response = store.call(store.service.CreateApiKey, request)
        emit(response)
        _note_key_once()

    @key_app.command("list")
    def list_(
        application: Annotated[str, typer.Argument(help="Application id.")],
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
        output: Output = None,
    ) -> None:
        """List an application's keys (never the secrets)."""
        with admin_client(addr, token, _store_service_stub) as store:
            emit(store.call(store.service.ListApiKeys, st.ListApiKeysRequest(application_id=application)))

    @key_app.command("get")
    def get(
        key_id: KeyId, addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None
    ) -> None:
        """Show one key (never the secret)."""
        with admin_client(addr, token, _store_service_stub) as store:
            emit(store.call(store.service.GetApiKey, st.GetApiKeyRequest(key_id=key_id)))

    @key_app.command("rotate")
    def rotate(
        key_id: KeyId,
        grace: Annotated[
            timedelta | None,
            typer.Option(
                "--grace",
                parser=duration_param,
                metavar="DURATION",
                help="How long the old key keeps working, e.g. 1h; 0 = at once; server default if unset.",
            ),
        ] = None,
        ttl: Ttl = None,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
        output: Output = None,
    ) -> None:
        """Issue a replacement key; the old one expires after the grace period."""
        request = st.RotateApiKeyRequest(key_id=key_id, ttl=_positive_ttl(ttl))
        if grace is not None:
            # Set explicitly even when zero: an unset grace means the server's default.
            request.grace_period.CopyFrom(duration_proto(grace))
        with admin_client(addr, token, _store_service_stub) as store:
            response = store.call(store.service.RotateApiKey, request)
        emit(response)
        _note_key_once()

    @key_app.command("revoke")
    def revoke(
        key_id: KeyId, addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None
    ) -> None:
        """Revoke a key at once."""
        with admin_client(addr, token, _store_service_stub) as store:
            emit(store.call(store.service.RevokeApiKey, st.RevokeApiKeyRequest(key_id=key_id)))

    return key_app


# --------------------------------------------------------------------------------------------------
# block (block rules)
# --------------------------------------------------------------------------------------------------


def _block_target(
    api: str | None, application: str | None, key: str | None, cidr: str | None
) -> tuple[int, str]:
    given = [
        (target, option, value)
        for target, option, value in (
            (st.BLOCK_TARGET_API, "--api", api),
            (st.BLOCK_TARGET_APPLICATION, "--application", application),
            (st.BLOCK_TARGET_API_KEY, "--key", key),
            (st.BLOCK_TARGET_CLIENT_CIDR, "--cidr", cidr),
        )
        if value is not None
    ]
    if len(given) != 1:
        raise typer.BadParameter("give exactly one of --api, --application, --key, --cidr")
    target, option, value = given[0]
    if target == st.BLOCK_TARGET_CLIENT_CIDR:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise typer.BadParameter(f"{value!r} is not an IP address or CIDR", param_hint=option) from None
    return target, value


def _block_commands() -> typer.Typer:
    block_app = typer.Typer(
        help="Block rules: deny by API, application, key or client CIDR.", no_args_is_help=True
    )

    @block_app.command("add")
    def add(
        api: Annotated[str | None, typer.Option("--api", help="Block every request to this API id.")] = None,
        application: Annotated[str | None, typer.Option("--application", help="Application id.")] = None,
        key: Annotated[str | None, typer.Option("--key", help="Key id.")] = None,
        cidr: Annotated[str | None, typer.Option("--cidr", help="Client IP address or CIDR.")] = None,
        reason: Annotated[str, typer.Option("--reason")] = "",
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
        output: Output = None,
    ) -> None:
        """Add a block rule; give exactly one target."""
        target, value = _block_target(api, application, key, cidr)
        rule = st.BlockRule(target=target, value=value, reason=reason)  # type: ignore[arg-type]
        with admin_client(addr, token, _store_service_stub) as store:
            emit(store.call(store.service.CreateBlockRule, st.CreateBlockRuleRequest(block_rule=rule)))

    @block_app.command("list")
    def list_(addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None) -> None:
        """List block rules."""
        with admin_client(addr, token, _store_service_stub) as store:
            emit(store.call(store.service.ListBlockRules, st.ListBlockRulesRequest()))

    @block_app.command("delete")
    def delete(
        rule_id: Annotated[str, typer.Argument(help="Block rule id.")],
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
        output: Output = None,
    ) -> None:
        """Delete a block rule."""
        with admin_client(addr, token, _store_service_stub) as store:
            emit(store.call(store.service.DeleteBlockRule, st.DeleteBlockRuleRequest(id=rule_id)))

    return block_app


def register(app: typer.Typer) -> None:
    """Mounts `tollway app|sub|key|block ...` on the main CLI."""
    app.add_typer(_app_commands(), name="app")
    app.add_typer(_sub_commands(), name="sub")
    app.add_typer(_key_commands(), name="key")
    app.add_typer(_block_commands(), name="block")

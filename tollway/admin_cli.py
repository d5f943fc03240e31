"""Admin commands of the `tollway` CLI: thin typer wrappers over the catalog and store admin gRPC APIs.

Every command opens a sync channel to the admin server, sends one or a few unary RPCs with the bearer
token, prints the response as JSON (proto field names) on stdout and maps gRPC errors to exit code 1.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import grpc
import typer
from google.protobuf.duration_pb2 import Duration
from google.protobuf.json_format import MessageToJson
from google.protobuf.message import Message

from tollway.admin_channel import admin_channel
from tollway.catalog.v1 import catalog_pb2 as cat
from tollway.catalog.v1 import catalog_pb2_grpc as cat_grpc
from tollway.settings import Settings
from tollway.store.v1 import store_pb2 as st
from tollway.store.v1 import store_pb2_grpc as st_grpc

RPC_TIMEOUT_SECONDS = 10.0
_DEFAULTS = Settings()  # plain dataclass defaults; from_env() would create secrets on disk
_R = TypeVar("_R")

# --------------------------------------------------------------------------------------------------
# Parsing helpers (pure; raise ValueError so they are testable without typer)
# --------------------------------------------------------------------------------------------------

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_PART = re.compile(r"(\d+)([smhdw])")
_UNBOUNDED_TIER = ("0", "inf", "*")


def parse_duration(text: str) -> timedelta:
    """'30s', '15m', '1h', '30d', '2w' or compounds such as '1h30m'; a bare '0' means zero."""
    value = text.strip().lower()
    if value == "0":
        return timedelta(0)
    if not value or _DURATION_PART.sub("", value):
        raise ValueError(f"invalid duration {text!r}: use a number with a unit s, m, h, d or w, e.g. 30d")
    seconds = sum(int(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(value))
    return timedelta(seconds=seconds)


def parse_money(text: str) -> str:
    """A non-negative decimal amount, kept as typed (the server stores decimal strings, never floats)."""
    value = text.strip()
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"invalid amount {text!r}: use a decimal such as 49.00 or 0.0004") from None
    if not amount.is_finite() or amount < 0 or "e" in value.lower():
        raise ValueError(f"invalid amount {text!r}: use a non-negative decimal such as 49.00")
    return value


def parse_tier(text: str) -> cat.PriceTier:
    """'UP_TO:UNIT_PRICE'; UP_TO 0 (or 'inf', '*') is the unbounded last tier."""
    up_to_text, sep, price_text = text.partition(":")
    up_to_text = up_to_text.strip().lower()
    if not sep:
        raise ValueError(f"invalid tier {text!r}: use UP_TO:UNIT_PRICE, e.g. 10000:0.001 or 0:0.0005")
    if up_to_text in _UNBOUNDED_TIER:
        up_to = 0
    elif up_to_text.isdigit():
        up_to = int(up_to_text)
    else:
        raise ValueError(f"invalid tier {text!r}: UP_TO must be a whole number (0 for unbounded)")
    return cat.PriceTier(up_to=up_to, unit_price=parse_money(price_text))


def duration_proto(value: timedelta) -> Duration:
    proto = Duration()
    proto.FromTimedelta(value)
    return proto


def _typer_parser(parse: Callable[[str], _R]) -> Callable[[str], _R]:
    """Turns a helper's ValueError into a usage error (exit code 2) with the helper's message."""

    def parser(value: str) -> _R:
        # Typer also calls the parser on values it already converted (defaults, repeated options).
        if not isinstance(value, str):
            return value
        try:
            return parse(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None

    return parser


_duration_param = _typer_parser(parse_duration)
_money_param = _typer_parser(parse_money)
_tier_param = _typer_parser(parse_tier)


# --------------------------------------------------------------------------------------------------
# Connection, errors and output
# --------------------------------------------------------------------------------------------------

AddrOpt = Annotated[
    str,
    typer.Option(
        "--addr",
        envvar="TOLLWAY_ADMIN_ADDR",
        help="Admin gRPC server, host:port.",
        rich_help_panel="Connection",
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="TOLLWAY_ADMIN_TOKEN",
        # Never show the token (or that it came from the environment) in help output.
        show_default=False,
        help="Admin bearer token; defaults to <TOLLWAY_DATA_DIR>/admin-token written by `tollway serve`.",
        rich_help_panel="Connection",
    ),
]

# Messages gRPC core uses when no connection could be made, as opposed to UNAVAILABLE from the server.
_CONNECT_FAILURES = (
    "failed to connect",
    "errors resolving",
    "dns resolution failed",
    "connection refused",
    "connections to all backends failing",
)


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _resolve_token(token: str | None) -> str:
    if token:
        return token.strip()
    # Embedded mode keeps the generated token in the data dir; reading it lets `tollway up` + CLI just work.
    path = Path(os.environ.get("TOLLWAY_DATA_DIR", str(_DEFAULTS.data_dir))) / "admin-token"
    try:
        stored = path.read_text().strip()
    except OSError:
        stored = ""
    if not stored:
        _fail("no admin token: pass --token or set TOLLWAY_ADMIN_TOKEN", code=2)
    return stored


class AdminClient:
    """One channel to the admin server with both stubs; every call carries the bearer token."""

    def __init__(self, addr: str, token: str, timeout: float = RPC_TIMEOUT_SECONDS) -> None:
        self.addr = addr
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._channel = admin_channel(addr)
        self.catalog = cat_grpc.CatalogServiceStub(self._channel)
        self.store = st_grpc.StoreServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def call(self, rpc: Callable[..., _R], request: Message) -> _R:
        try:
            return rpc(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            _fail(self._describe(exc))

    def _describe(self, exc: grpc.RpcError) -> str:
        code: grpc.StatusCode = exc.code()  # type: ignore[attr-defined]
        details: str = exc.details() or ""  # type: ignore[attr-defined]
        status = f"{code.name}: {details}" if details else code.name
        unreachable = code == grpc.StatusCode.UNAVAILABLE and any(
            marker in details.lower() for marker in _CONNECT_FAILURES
        )
        if code == grpc.StatusCode.DEADLINE_EXCEEDED and not self._connected():
            unreachable = True
        if unreachable:
            return f"cannot reach the admin server at {self.addr}: {status}"
        return status

    def _connected(self) -> bool:
        try:
            grpc.channel_ready_future(self._channel).result(timeout=0.05)
        except grpc.FutureTimeoutError:
            return False
        return True


@contextmanager
def _admin(addr: str, token: str | None) -> Iterator[AdminClient]:
    client = AdminClient(addr, _resolve_token(token))
    try:
        yield client
    finally:
        client.close()


def _emit(message: Message) -> None:
    typer.echo(
        MessageToJson(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    )


def _note_key_once() -> None:
    typer.echo("note: the full key is shown only once; store it now.", err=True)


def _require_changes(mask: Sequence[str]) -> None:
    if not mask:
        raise typer.BadParameter("nothing to update: pass at least one option to change")


# --------------------------------------------------------------------------------------------------
# plan
# --------------------------------------------------------------------------------------------------


class QuotaPolicyChoice(StrEnum):
    hard = "hard"
    soft = "soft"


_QUOTA_POLICIES = {
    QuotaPolicyChoice.hard: cat.QUOTA_POLICY_HARD,
    QuotaPolicyChoice.soft: cat.QUOTA_POLICY_SOFT,
}

_LIMITS = "Limits (0 = no limit)"
_PRICING = "Pricing"

PerSecond = Annotated[int | None, typer.Option("--per-second", min=0, rich_help_panel=_LIMITS)]
PerMinute = Annotated[int | None, typer.Option("--per-minute", min=0, rich_help_panel=_LIMITS)]
PerHour = Annotated[int | None, typer.Option("--per-hour", min=0, rich_help_panel=_LIMITS)]
PerDay = Annotated[int | None, typer.Option("--per-day", min=0, rich_help_panel=_LIMITS)]
MonthlyQuota = Annotated[
    int | None,
    typer.Option("--monthly-quota", min=0, help="Requests per billing period.", rich_help_panel=_LIMITS),
]
QuotaPolicyOpt = Annotated[
    QuotaPolicyChoice | None,
    typer.Option(
        "--quota-policy",
        help="hard: refuse beyond the quota; soft: admit and bill as overage.",
        rich_help_panel=_LIMITS,
    ),
]
Currency = Annotated[
    str | None, typer.Option("--currency", help="ISO 4217 code, e.g. EUR.", rich_help_panel=_PRICING)
]
Fee = Annotated[
    str | None,
    typer.Option("--fee", parser=_money_param, help="Recurring fee per period.", rich_help_panel=_PRICING),
]
Included = Annotated[
    int | None,
    typer.Option("--included", min=0, help="Requests covered by the fee.", rich_help_panel=_PRICING),
]
UnitPrice = Annotated[
    str | None,
    typer.Option(
        "--unit-price",
        parser=_money_param,
        help="Price per request beyond the included ones.",
        rich_help_panel=_PRICING,
    ),
]
Tiers = Annotated[
    list[cat.PriceTier] | None,
    typer.Option(
        "--tier",
        parser=_tier_param,
        metavar="UP_TO:PRICE",
        help="Graduated tier, repeatable, in order; UP_TO 0 is the unbounded last tier.",
        rich_help_panel=_PRICING,
    ),
]
OveragePrice = Annotated[
    str | None,
    typer.Option(
        "--overage-price",
        parser=_money_param,
        help="Price per request beyond a soft quota.",
        rich_help_panel=_PRICING,
    ),
]
MinimumCharge = Annotated[
    str | None,
    typer.Option(
        "--minimum-charge", parser=_money_param, help="Least charge per period.", rich_help_panel=_PRICING
    ),
]
Description = Annotated[str | None, typer.Option("--description")]


def _apply_limits(
    limits: cat.PlanLimits,
    per_second: int | None,
    per_minute: int | None,
    per_hour: int | None,
    per_day: int | None,
    monthly_quota: int | None,
    quota_policy: QuotaPolicyChoice | None,
) -> bool:
    """Sets the given limits on `limits`; True when any was given."""
    values = {
        "requests_per_second": per_second,
        "requests_per_minute": per_minute,
        "requests_per_hour": per_hour,
        "requests_per_day": per_day,
        "monthly_quota": monthly_quota,
    }
    changed = False
    for field, value in values.items():
        if value is not None:
            setattr(limits, field, value)
            changed = True
    if quota_policy is not None:
        limits.quota_policy = _QUOTA_POLICIES[quota_policy]
        changed = True
    return changed


def _apply_pricing(
    pricing: cat.PlanPricing,
    currency: str | None,
    fee: str | None,
    included: int | None,
    unit_price: str | None,
    tiers: list[cat.PriceTier] | None,
    overage_price: str | None,
    minimum_charge: str | None,
) -> bool:
    """Sets the given pricing fields on `pricing` (given tiers replace all tiers); True when any was given."""
    values = {
        "currency": currency.strip().upper() if currency is not None else None,
        "recurring_fee": fee,
        "included_requests": included,
        "unit_price": unit_price,
        "overage_price": overage_price,
        "minimum_charge": minimum_charge,
    }
    changed = False
    for field, value in values.items():
        if value is not None:
            setattr(pricing, field, value)
            changed = True
    if tiers:
        del pricing.tiers[:]
        pricing.tiers.extend(tiers)
        changed = True
    return changed


def _plan_commands() -> typer.Typer:
    plan_app = typer.Typer(help="Plans: limits and pricing APIs are sold under.", no_args_is_help=True)

    @plan_app.command("create")
    def create(
        name: Annotated[str, typer.Argument(help="Unique plan name, e.g. gold.")],
        description: Description = None,
        per_second: PerSecond = None,
        per_minute: PerMinute = None,
        per_hour: PerHour = None,
        per_day: PerDay = None,
        monthly_quota: MonthlyQuota = None,
        quota_policy: QuotaPolicyOpt = None,
        currency: Currency = None,
        fee: Fee = None,
        included: Included = None,
        unit_price: UnitPrice = None,
        tier: Tiers = None,
        overage_price: OveragePrice = None,
        minimum_charge: MinimumCharge = None,
        approval_required: Annotated[
            bool, typer.Option(help="New subscriptions wait for approval by the billing side.")
        ] = False,
        addr: AddrOpt = _DEFAULTS.admin_addr,
        token: TokenOpt = None,
    ) -> None:
        """Create a plan."""
        plan = cat.Plan(name=name, description=description or "", approval_required=approval_required)
        _apply_limits(plan.limits, per_second, per_minute, per_hour, per_day, monthly_quota, quota_policy)
        _apply_pricing(plan.pricing, currency, fee, included, unit_price, tier, overage_price, minimum_charge)
        with _admin(addr, token) as admin:
            _emit(admin.call(admin.catalog.CreatePlan, cat.CreatePlanRequest(plan=plan)))

    @plan_app.command("list")
    def list_(addr: AddrOpt = _DEFAULTS.admin_addr, token: TokenOpt = None) -> None:
        """List plans."""
        with _admin(addr, token) as admin:
            _emit(admin.call(admin.catalog.ListPlans, cat.ListPlansRequest()))

    @plan_app.command("get")
    def get(
        plan: Annotated[str, typer.Argument(help="Plan id or name.")],
        addr: AddrOpt = _DEFAULTS.admin_addr,
        token: TokenOpt = None,
    ) -> None:
        """Show one plan."""
        with _admin(addr, token) as admin:
            _emit(admin.call(admin.catalog.GetPlan, cat.GetPlanRequest(id=plan)))

    @plan_app.command("update")
    def update(
        plan: Annotated[str, typer.Argument(help="Plan id or name.")],
        name: Annotated[str | None, typer.Option("--name", help="Rename the plan.")] = None,
        description: Description = None,
        per_second: PerSecond = None,
        per_minute: PerMinute = None,
        per_hour: PerHour = None,
        per_day: PerDay = None,
        monthly_quota: MonthlyQuota = None,
        quota_policy: QuotaPolicyOpt = None,
        currency: Currency = None,
        fee: Fee = None,
        included: Included = None,
        unit_price: UnitPrice = None,
        tier: Tiers = None,
        clear_tiers: Annotated[
            bool, typer.Option("--clear-tiers", help="Drop graduated tiers.", rich_help_panel=_PRICING)
        ] = False,
        overage_price: OveragePrice = None,
        minimum_charge: MinimumCharge = None,
        approval_required: Annotated[
            bool | None, typer.Option(help="New subscriptions wait for approval by the billing side.")
        ] = None,
        addr: AddrOpt = _DEFAULTS.admin_addr,
        token: TokenOpt = None,
    ) -> None:
        """Change the given fields of a plan; other limits and prices stay as they are."""
        if tier and clear_tiers:
            raise typer.BadParameter("--tier and --clear-tiers exclude each other")
        with _admin(addr, token) as admin:
            # The update mask is top-level (limits, pricing), so merge into the current values first.
            current = admin.call(admin.catalog.GetPlan, cat.GetPlanRequest(id=plan)).plan
            changed = cat.Plan(id=current.id)
            mask: list[str] = []
            if name is not None:
                changed.name = name
                mask.append("name")
            if description is not None:
                changed.description = description
                mask.append("description")
            changed.limits.CopyFrom(current.limits)
            if _apply_limits(
                changed.limits, per_second, per_minute, per_hour, per_day, monthly_quota, quota_policy
            ):
                mask.append("limits")
            changed.pricing.CopyFrom(current.pricing)
            if clear_tiers:
                del changed.pricing.tiers[:]
            if (
                _apply_pricing(
                    changed.pricing, currency, fee, included, unit_price, tier, overage_price, minimum_charge
                )
                or clear_tiers
            ):
                mask.append("pricing")
            if approval_required is not None:
                changed.approval_required = approval_required
                mask.append("approval_required")
            _require_changes(mask)
            request = cat.UpdatePlanRequest(plan=changed)
            request.update_mask.paths.extend(mask)
            _emit(admin.call(admin.catalog.UpdatePlan, request))

    @plan_app.command("delete")
    def delete(
        plan: Annotated[str, typer.Argument(help="Plan id or name.")],
        addr: AddrOpt = _DEFAULTS.admin_addr,
        token: TokenOpt = None,
    ) -> None:
        """Delete a plan no API offers and no subscription uses."""
        with _admin(addr, token) as admin:
            plan_id = _plan_id(admin, plan)
            _emit(admin.call(admin.catalog.DeletePlan, cat.DeletePlanRequest(id=plan_id)))

    return plan_app


def _plan_id(admin: AdminClient, ref: str) -> str:
    """GetPlan accepts an id or a name; other RPCs want the id."""
    return admin.call(admin.catalog.GetPlan, cat.GetPlanRequest(id=ref)).plan.id


def _api_id(admin: AdminClient, ref: str) -> str:
    return admin.call(admin.catalog.GetApi, cat.GetApiRequest(id=ref)).api.id


# --------------------------------------------------------------------------------------------------
# api
# --------------------------------------------------------------------------------------------------

ApiRef = Annotated[str, typer.Argument(help="API id or name.")]
PlanRefs = Annotated[
    list[str] | None, typer.Option("--plan", help="Plan id or name the API is offered under; repeatable.")
]


def _api_commands() -> typer.Typer:
    api_app = typer.Typer(help="APIs: what the gateway routes and sells.", no_args_is_help=True)

    @api_app.command("create")
    def create(
        name: Annotated[str, typer.Argument(help="API name, e.g. weather.")],
        context: Annotated[str, typer.Option("--context", help="Gateway path prefix, e.g. /weather/v1.")],
        upstream: Annotated[
            list[str], typer.Option("--upstream", help="Backend URL (http:// or https://); repeatable.")
        ],
        version: Annotated[str, typer.Option("--version", help="API version, e.g. v1.")] = "",
        plan: PlanRefs = None,
        description: Description = None,
        publish: Annotated[bool, typer.Option("--publish", help="Publish right after creating.")] = False,
        addr: AddrOpt = _DEFAULTS.admin_addr,
        token: TokenOpt = None,
    ) -> None:
        """Create an API (unpublished unless --publish)."""
        with _admin(addr, token) as admin:
            api = cat.Api(
                name=name,
                version=version,
                context_path=context,
                upstream_urls=upstream,
                plan_ids=[_plan_id(admin, ref) for ref in plan or ()],
                description=description or "",
            )
            created = admin.call(admin.catalog.CreateApi, cat.CreateApiRequest(api=api))
            if not publish:
                _emit(created)
                return
            try:
                published = admin.call(admin.catalog.PublishApi, cat.PublishApiRequest(id=created.api.id))
            except typer.Exit:
                # Say what did happen: the API exists, unpublished.
                _emit(created)
                typer.echo(f"note: API {created.api.id} was created but not published", err=True)
                raise
            _emit(published)

    @api_app.command("list")
    def list_(
        published_only: Annotated[bool, typer.Option("--published-only")] = False,
        addr: AddrOpt = _DEFAULTS.admin_addr,
        token: TokenOpt = None,
    ) -> None:
        """List APIs."""
        with _admin(addr, token) as admin:
            _emit(admin.call(admin.catalog.ListApis, cat.ListApisRequest(published_only=published_only)))

    @api_app.command("get")
    def get(api: ApiRef, addr: AddrOpt = _DEFAULTS.admin_addr, token: TokenOpt = None) -> None:
        """Show one API."""
        with _admin(addr, token) as admin:
            _emit(admin.call(admin.catalog.GetApi, cat.GetApiRequest(id=api)))

    @api_app.command("update")
    def update(
        api: ApiRef,
        name: Annotated[str | None, typer.Option("--name")] = None,
        version: Annotated[str | None, typer.Option("--version")] = None,
        context: Annotated[str | None, typer.Option("--context")] = None,
        upstream: Annotated[
            list[str] | None, typer.Option("--upstream", help="Replaces all upstreams; repeatable.")
        ] = None,
        plan: Annotated[
            list[str] | None, typer.Option("--plan", help="Replaces all offered plans; repeatable.")
        ] = None,
        description: Description = None,
        addr: AddrOpt = _DEFAULTS.admin_addr,
        token: TokenOpt = None,
    ) -> None:
        """Change the given fields of an API (publishing has its own commands)."""
        with _admin(addr, token) as admin:
            changed = cat.Api(id=_api_id(admin, api))
            mask: list[str] = []
            for field, value in (
                ("name", name),
                ("version", version),
                ("context_path", context),
                ("description", description),
            ):
                if value is not None:
                    setattr(changed, field, value)
                    mask.append(field)
            if upstream:
                changed.upstream_urls.extend(upstream)
                mask.append("upstream_urls")
            if plan:
                changed.plan_ids.extend(_plan_id(admin, ref) for ref in plan)
                mask.append("plan_ids")
            _require_changes(mask)
            request = cat.UpdateApiRequest(api=changed)
            request.update_mask.paths.extend(mask)
            _emit(admin.call(admin.catalog.UpdateApi, request))

    @api_app.command("publish")
    def publish(api: ApiRef, addr: AddrOpt = _DEFAULTS.admin_addr, token: TokenOpt = None) -> None:
        """Make an API routable through the gateway."""
        with _admin(addr, token) as admin:
            _emit(admin.call(admin.catalog.PublishApi, cat.PublishApiRequest(id=_api_id(admin, api))))

    @api_app.command("unpublish")
    def unpublish(api: ApiRef, addr: AddrOpt = _DEFAULTS.admin_addr, token: TokenOpt = None) -> None:
        """Remove an API's route from the gateway."""
        with _admin(addr, token) as admin:
            _emit(admin.call(admin.catalog.UnpublishApi, cat.UnpublishApiRequest(id=_api_id(admin, api))))

    @api_app.command("delete")
    def delete(api: ApiRef, addr: AddrOpt = _DEFAULTS.admin_addr, token: TokenOpt = None) -> None:
        """Delete an unpublished API without live subscriptions."""
        with _admin(addr, token) as admin:
            _emit(admin.call(admin.catalog.DeleteApi, cat.DeleteApiRequest(id=_api_id(admin, api))))

    return api_app


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
        addr: AddrOpt = _DEFAULTS.admin_addr,
        token: TokenOpt = None,
    ) -> None:
        """Create an application."""
        application = st.Application(name=name, owner=owner, description=description)
        with _admin(addr, token) as admin:
            _emit(
                admin.call(
                    admin.store.CreateApplication, st.CreateApplicationRequest(application=application)
                )
            )

    @app_app.command("list")
    def list_(
        owner: Annotated[str, typer.Option("--owner", help="Only this owner's applications.")] = "",
        include_deleted: Annotated[bool, typer.Option("--include-deleted")] = False,
        addr: AddrOpt = _DEFAULTS.admin_addr,
        token: TokenOpt = None,
    ) -> None:
        """List applications."""
        request = st.ListApplicationsRequest(owner=owner, include_deleted=include_deleted)
        with _admin(addr, token) as admin:
            _emit(admin.call(admin.store.ListApplications, request))

    @app_app.command("get")
    def get(application: AppId, addr: AddrOpt = _DEFAULTS.admin_addr, token: TokenOpt = None) -> None:
        """Show one application."""
        with _admin(addr, token) as admin:
            _emit(admin.call(admin.store.GetApplication, st.GetApplicationRequest(id=application)))

    @app_app.command("update")
    def update(
        application: AppId,
        name: Annotated[str | None, typer.Option("--name")] = None,
        owner: Annotated[str | None, typer.Option("--owner")] = None,
        description: Description = None,
        addr: AddrOpt = _DEFAULTS.admin_addr,
        token: TokenOpt = None,
    ) -> None:
        """Change the given fields of an application."""
        changed = st.Application(id=application)
        mask: list[str] = []
        for field, value in (("name", name), ("owner", owner), ("description", description)):
            if value is not None:
                setattr(changed, field, value)
                mask.append(field)
        # An empty mask would mean "replace all three", so refuse it rather than blank fields.
        _require_changes(mask)
        request = st.UpdateApplicationRequest(application=changed)
        request.update_mask.paths.extend(mask)
        with _admin(addr, token) as admin:
            _emit(admin.call(admin.store.UpdateApplication, request))

    @app_app.command("delete")
    def delete(application: AppId, addr: AddrOpt = _DEFAULTS.admin_addr, token: TokenOpt = None) -> None:
        """Delete an application: revokes its keys and cancels its subscriptions."""
        with _admin(addr, token) as admin:
            _emit(admin.call(admin.store.DeleteApplication, st.DeleteApplicationRequest(id=application)))

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
        addr: AddrOpt = _DEFAULTS.admin_addr,
        token: TokenOpt = None,
    ) -> None:
        """Subscribe an application to a published API under one of its plans."""
        request = st.CreateSubscriptionRequest(
            application_id=application, api_id=api, plan_id=plan, billing_anchor_day=anchor_day
        )
        with _admin(addr, token) as admin:
            _emit(admin.call(admin.store.CreateSubscription, request))

    @sub_app.command("list")
    def list_(
        application: Annotated[str, typer.Option("--application", help="Application id.")] = "",
        api: Annotated[str, typer.Option("--api", help="API id.")] = "",
        state: Annotated[SubStateChoice | None, typer.Option("--state")] = None,
        addr: AddrOpt = _DEFAULTS.admin_addr,
        token: TokenOpt = None,
    ) -> None:
        """List subscriptions."""
        request = st.ListSubscriptionsRequest(application_id=application, api_id=api)
        if state is not None:
            request.state = st.SubscriptionState.Value(f"SUBSCRIPTION_STATE_{state.value.upper()}")
        with _admin(addr, token) as admin:
            _emit(admin.call(admin.store.ListSubscriptions, request))

    @sub_app.command("get")
    def get(subscription: SubId, addr: AddrOpt = _DEFAULTS.admin_addr, token: TokenOpt = None) -> None:
        """Show one subscription."""
        with _admin(addr, token) as admin:
            _emit(admin.call(admin.store.GetSubscription, st.GetSubscriptionRequest(id=subscription)))

    @sub_app.command("block")
    def block(
        subscription: SubId,
        reason: Annotated[str, typer.Option("--reason")] = "",
        addr: AddrOpt = _DEFAULTS.admin_addr,
        token: TokenOpt = None,
    ) -> None:
        """Block an active subscription (403 at the gateway)."""
        request = st.BlockSubscriptionRequest(id=subscription, reason=reason)
        with _admin(addr, token) as admin:
            _emit(admin.call(admin.store.BlockSubscription, request))

    @sub_app.command("unblock")
    def unblock(subscription: SubId, addr: AddrOpt = _DEFAULTS.admin_addr, token: TokenOpt = None) -> None:
        """Unblock a blocked subscription."""
        with _admin(addr, token) as admin:
            _emit(admin.call(admin.store.UnblockSubscription, st.UnblockSubscriptionRequest(id=subscription)))

    @sub_app.command("cancel")
    def cancel(subscription: SubId, addr: AddrOpt = _DEFAULTS.admin_addr, token: TokenOpt = None) -> None:
        """Cancel a subscription."""
        with _admin(addr, token) as admin:
            _emit(admin.call(admin.store.CancelSubscription, st.CancelSubscriptionRequest(id=subscription)))

    return sub_app


# --------------------------------------------------------------------------------------------------
# key (API keys)
# --------------------------------------------------------------------------------------------------

KeyId = Annotated[str, typer.Argument(help="Key id (the part between the first two underscores).")]
Ttl = Annotated[
    timedelta | None,
    typer.Option(
        "--ttl",
        parser=_duration_param,
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
        addr: AddrOpt = _DEFAULTS.admin_addr,
        token: TokenOpt = None,
    ) -> None:
        """Issue a key for an application; the full key is printed once."""
        request = st.CreateApiKeyRequest(application_id=application, name=name, ttl=_positive_ttl(ttl))
        with _admin(addr, token) as admin:
            response = admin.call(admin.store.CreateApiKey, request)
        _emit(response)
        _note_key_once()

    @key_app.command("list")
    def list_(
        application: Annotated[str, typer.Argument(help="Application id.")],
        addr: AddrOpt = _DEFAULTS.admin_addr,
        token: TokenOpt = None,
    ) -> None:
        """List an application's keys (never the secrets)."""
        with _admin(addr, token) as admin:
            _emit(admin.call(admin.store.ListApiKeys, st.ListApiKeysRequest(application_id=application)))

    @key_app.command("get")
    def get(key_id: KeyId, addr: AddrOpt = _DEFAULTS.admin_addr, token: TokenOpt = None) -> None:
        """Show one key (never the secret)."""
        with _admin(addr, token) as admin:
            _emit(admin.call(admin.store.GetApiKey, st.GetApiKeyRequest(key_id=key_id)))

    @key_app.command("rotate")
    def rotate(
        key_id: KeyId,
        grace: Annotated[
            timedelta | None,
            typer.Option(
                "--grace",
                parser=_duration_param,
                metavar="DURATION",
                help="How long the old key keeps working, e.g. 1h; 0 = at once; server default if unset.",
            ),
        ] = None,
        ttl: Ttl = None,
        addr: AddrOpt = _DEFAULTS.admin_addr,
        token: TokenOpt = None,
    ) -> None:
        """Issue a replacement key; the old one expires after the grace period."""
        request = st.RotateApiKeyRequest(key_id=key_id, ttl=_positive_ttl(ttl))
        if grace is not None:
            # Set explicitly even when zero: an unset grace means the server's default.
            request.grace_period.CopyFrom(duration_proto(grace))
        with _admin(addr, token) as admin:
            response = admin.call(admin.store.RotateApiKey, request)
        _emit(response)
        _note_key_once()

    @key_app.command("revoke")
    def revoke(key_id: KeyId, addr: AddrOpt = _DEFAULTS.admin_addr, token: TokenOpt = None) -> None:
        """Revoke a key at once."""
        with _admin(addr, token) as admin:
            _emit(admin.call(admin.store.RevokeApiKey, st.RevokeApiKeyRequest(key_id=key_id)))

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
        addr: AddrOpt = _DEFAULTS.admin_addr,
        token: TokenOpt = None,
    ) -> None:
        """Add a block rule; give exactly one target."""
        target, value = _block_target(api, application, key, cidr)
        rule = st.BlockRule(target=target, value=value, reason=reason)  # type: ignore[arg-type]
        with _admin(addr, token) as admin:
            _emit(admin.call(admin.store.CreateBlockRule, st.CreateBlockRuleRequest(block_rule=rule)))

    @block_app.command("list")
    def list_(addr: AddrOpt = _DEFAULTS.admin_addr, token: TokenOpt = None) -> None:
        """List block rules."""
        with _admin(addr, token) as admin:
            _emit(admin.call(admin.store.ListBlockRules, st.ListBlockRulesRequest()))

    @block_app.command("delete")
    def delete(
        rule_id: Annotated[str, typer.Argument(help="Block rule id.")],
        addr: AddrOpt = _DEFAULTS.admin_addr,
        token: TokenOpt = None,
    ) -> None:
        """Delete a block rule."""
        with _admin(addr, token) as admin:
            _emit(admin.call(admin.store.DeleteBlockRule, st.DeleteBlockRuleRequest(id=rule_id)))

    return block_app


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------


def register(app: typer.Typer) -> None:
    """Mounts the admin command groups (plan, api, app, sub, key, block) on the main `tollway` app."""
    app.add_typer(_plan_commands(), name="plan")
    app.add_typer(_api_commands(), name="api")
    app.add_typer(_app_commands(), name="app")
    app.add_typer(_sub_commands(), name="sub")
    app.add_typer(_key_commands(), name="key")
    app.add_typer(_block_commands(), name="block")


__all__ = ["AdminClient", "duration_proto", "parse_duration", "parse_money", "parse_tier", "register"]

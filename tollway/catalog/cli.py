"""`tollway plan ...` and `tollway api ...`: the catalog's admin commands, thin typer wrappers over the
CatalogService (JSON on stdout, proto field names; connection options and exit codes from
`tollway.cli_support`)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated

import typer

from tollway.catalog.documents_cli import document_commands
from tollway.catalog.v1 import catalog_pb2 as cat
from tollway.catalog.v1.catalog_pb2_grpc import CatalogServiceStub
from tollway.cli_support import (
    DEFAULT_ADMIN_ADDR,
    AdminAddr,
    AdminClient,
    AdminToken,
    admin_client,
    emit,
    require_changes,
    typer_parser,
)

_UNBOUNDED_TIER = ("0", "inf", "*")


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


_money_param = typer_parser(parse_money)
_tier_param = typer_parser(parse_tier)

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

PlanRef = Annotated[str, typer.Argument(help="Plan id or name.")]
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


def _plan_id(catalog: AdminClient[CatalogServiceStub], ref: str) -> str:
    """GetPlan accepts an id or a name; other RPCs want the id."""
    response: cat.GetPlanResponse = catalog.call(catalog.service.GetPlan, cat.GetPlanRequest(id=ref))
    return response.plan.id


def _api_id(catalog: AdminClient[CatalogServiceStub], ref: str) -> str:
    response: cat.GetApiResponse = catalog.call(catalog.service.GetApi, cat.GetApiRequest(id=ref))
    return response.api.id


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
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
    ) -> None:
        """Create a plan."""
        plan = cat.Plan(name=name, description=description or "", approval_required=approval_required)
        _apply_limits(plan.limits, per_second, per_minute, per_hour, per_day, monthly_quota, quota_policy)
        _apply_pricing(plan.pricing, currency, fee, included, unit_price, tier, overage_price, minimum_charge)
        with admin_client(addr, token, CatalogServiceStub) as catalog:
            emit(catalog.call(catalog.service.CreatePlan, cat.CreatePlanRequest(plan=plan)))

    @plan_app.command("list")
    def list_(addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None) -> None:
        """List plans."""
        with admin_client(addr, token, CatalogServiceStub) as catalog:
            emit(catalog.call(catalog.service.ListPlans, cat.ListPlansRequest()))

    @plan_app.command("get")
    def get(plan: PlanRef, addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None) -> None:
        """Show one plan."""
        with admin_client(addr, token, CatalogServiceStub) as catalog:
            emit(catalog.call(catalog.service.GetPlan, cat.GetPlanRequest(id=plan)))

    @plan_app.command("update")
    def update(
        plan: PlanRef,
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
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
    ) -> None:
        """Change the given fields of a plan; other limits and prices stay as they are."""
        if tier and clear_tiers:
            raise typer.BadParameter("--tier and --clear-tiers exclude each other")
        with admin_client(addr, token, CatalogServiceStub) as catalog:
            # The update mask is top-level (limits, pricing), so merge into the current values first.
            current = catalog.call(catalog.service.GetPlan, cat.GetPlanRequest(id=plan)).plan
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
            require_changes(mask)
            request = cat.UpdatePlanRequest(plan=changed)
            request.update_mask.paths.extend(mask)
            emit(catalog.call(catalog.service.UpdatePlan, request))

    @plan_app.command("delete")
    def delete(plan: PlanRef, addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None) -> None:
        """Delete a plan no API offers and no subscription uses."""
        with admin_client(addr, token, CatalogServiceStub) as catalog:
            request = cat.DeletePlanRequest(id=_plan_id(catalog, plan))
            emit(catalog.call(catalog.service.DeletePlan, request))

    return plan_app


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
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
    ) -> None:
        """Create an API (unpublished unless --publish)."""
        with admin_client(addr, token, CatalogServiceStub) as catalog:
            api = cat.Api(
                name=name,
                version=version,
                context_path=context,
                upstream_urls=upstream,
                plan_ids=[_plan_id(catalog, ref) for ref in plan or ()],
                description=description or "",
            )
            created = catalog.call(catalog.service.CreateApi, cat.CreateApiRequest(api=api))
            if not publish:
                emit(created)
                return
            try:
                published = catalog.call(catalog.service.PublishApi, cat.PublishApiRequest(id=created.api.id))
            except typer.Exit:
                # Say what did happen: the API exists, unpublished.
                emit(created)
                typer.echo(f"note: API {created.api.id} was created but not published", err=True)
                raise
            emit(published)

    @api_app.command("list")
    def list_(
        published_only: Annotated[bool, typer.Option("--published-only")] = False,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
    ) -> None:
        """List APIs."""
        with admin_client(addr, token, CatalogServiceStub) as catalog:
            request = cat.ListApisRequest(published_only=published_only)
            emit(catalog.call(catalog.service.ListApis, request))

    @api_app.command("get")
    def get(api: ApiRef, addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None) -> None:
        """Show one API."""
        with admin_client(addr, token, CatalogServiceStub) as catalog:
            emit(catalog.call(catalog.service.GetApi, cat.GetApiRequest(id=api)))

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
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
    ) -> None:
        """Change the given fields of an API (publishing has its own commands)."""
        with admin_client(addr, token, CatalogServiceStub) as catalog:
            changed = cat.Api(id=_api_id(catalog, api))
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
                changed.plan_ids.extend(_plan_id(catalog, ref) for ref in plan)
                mask.append("plan_ids")
            require_changes(mask)
            request = cat.UpdateApiRequest(api=changed)
            request.update_mask.paths.extend(mask)
            emit(catalog.call(catalog.service.UpdateApi, request))

    @api_app.command("publish")
    def publish(api: ApiRef, addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None) -> None:
        """Make an API routable through the gateway."""
        with admin_client(addr, token, CatalogServiceStub) as catalog:
            request = cat.PublishApiRequest(id=_api_id(catalog, api))
            emit(catalog.call(catalog.service.PublishApi, request))

    @api_app.command("unpublish")
    def unpublish(api: ApiRef, addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None) -> None:
        """Remove an API's route from the gateway."""
        with admin_client(addr, token, CatalogServiceStub) as catalog:
            request = cat.UnpublishApiRequest(id=_api_id(catalog, api))
            emit(catalog.call(catalog.service.UnpublishApi, request))

    @api_app.command("delete")
    def delete(api: ApiRef, addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None) -> None:
        """Delete an unpublished API without live subscriptions."""
        with admin_client(addr, token, CatalogServiceStub) as catalog:
            request = cat.DeleteApiRequest(id=_api_id(catalog, api))
            emit(catalog.call(catalog.service.DeleteApi, request))

    api_app.add_typer(document_commands(), name="doc")
    return api_app


def register(app: typer.Typer) -> None:
    """Mounts `tollway plan ...` and `tollway api ...` on the main CLI."""
    app.add_typer(_plan_commands(), name="plan")
    app.add_typer(_api_commands(), name="api")

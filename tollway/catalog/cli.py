"""`tollway plan ...` and `tollway api ...`: the catalog's admin commands, thin typer wrappers over the
CatalogService (JSON on stdout, proto field names; connection options and exit codes from
`tollway.cli_support`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from tollway.catalog.cli_options import (
    _PRICING,
    Currency,
    Description,
    EffectiveAt,
    EffectiveNow,
    Fee,
    Included,
    MinimumCharge,
    MonthlyQuota,
    OveragePrice,
    PackagePrice,
    PackageSize,
    PerDay,
    PerHour,
    PerMinute,
    PerSecond,
    PlanRef,
    QuotaPolicyOpt,
    TierModeOpt,
    Tiers,
    TrialDays,
    UnitPrice,
    apply_limits,
    apply_pricing,
)
from tollway.catalog.documents_cli import document_commands
from tollway.catalog.v1 import catalog_pb2 as cat
from tollway.cli_support import (
    DEFAULT_ADMIN_ADDR,
    AdminAddr,
    AdminClient,
    AdminToken,
    Output,
    admin_client,
    emit,
    require_changes,
    timestamp_proto,
)

if TYPE_CHECKING:
    import grpc

    from tollway.catalog.v1.catalog_pb2_grpc import CatalogServiceStub


def _catalog_service_stub(channel: grpc.Channel) -> CatalogServiceStub:
    """The stub, imported on first use: gRPC's import is paid by a call, not by `tollway --help`."""
    from tollway.catalog.v1.catalog_pb2_grpc import CatalogServiceStub

    return CatalogServiceStub(channel)


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
        tier_mode: TierModeOpt = None,
        package_size: PackageSize = None,
        package_price: PackagePrice = None,
        trial_days: TrialDays = None,
        approval_required: Annotated[
            bool, typer.Option(help="New subscriptions wait for approval by the billing side.")
        ] = False,
        prepaid: Annotated[
            bool, typer.Option(help="Admit requests only while the application holds credit (402 at zero).")
        ] = False,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
        output: Output = None,
    ) -> None:
        """Create a plan."""
        plan = cat.Plan(
            name=name, description=description or "", approval_required=approval_required, prepaid=prepaid
        )
        apply_limits(plan.limits, per_second, per_minute, per_hour, per_day, monthly_quota, quota_policy)
        apply_pricing(
            plan.pricing, currency, fee, included, unit_price, tier, overage_price, minimum_charge, tier_mode,
            package_size, package_price, trial_days,
        )  # fmt: skip
        with admin_client(addr, token, _catalog_service_stub) as catalog:
            emit(catalog.call(catalog.service.CreatePlan, cat.CreatePlanRequest(plan=plan)))

    @plan_app.command("list")
    def list_(addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None) -> None:
        """List plans."""
        with admin_client(addr, token, _catalog_service_stub) as catalog:
            emit(catalog.call(catalog.service.ListPlans, cat.ListPlansRequest()))

    @plan_app.command("get")
    def get(
        plan: PlanRef, addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None
    ) -> None:
        """Show one plan."""
        with admin_client(addr, token, _catalog_service_stub) as catalog:
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
        tier_mode: TierModeOpt = None,
        package_size: PackageSize = None,
        package_price: PackagePrice = None,
        trial_days: TrialDays = None,
        approval_required: Annotated[
            bool | None, typer.Option(help="New subscriptions wait for approval by the billing side.")
        ] = None,
        prepaid: Annotated[
            bool | None, typer.Option(help="Admit requests only while the application holds credit.")
        ] = None,
        now: EffectiveNow = False,
        at: EffectiveAt = None,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
        output: Output = None,
    ) -> None:
        """Change the given fields of a plan; other limits and prices stay as they are. A change of
        limits or prices is a new version of the plan, from each subscription's next period unless
        --now or --at says otherwise (`tollway plan versions` lists them)."""
        if tier and clear_tiers:
            raise typer.BadParameter("--tier and --clear-tiers exclude each other")
        if now and at is not None:
            raise typer.BadParameter("--now and --at exclude each other")
        with admin_client(addr, token, _catalog_service_stub) as catalog:
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
            if apply_limits(
                changed.limits, per_second, per_minute, per_hour, per_day, monthly_quota, quota_policy
            ):
                mask.append("limits")
            changed.pricing.CopyFrom(current.pricing)
            if clear_tiers:
                del changed.pricing.tiers[:]
            pricing_given = apply_pricing(
                changed.pricing, currency, fee, included, unit_price, tier, overage_price, minimum_charge,
                tier_mode, package_size, package_price, trial_days,
            )  # fmt: skip
            if pricing_given or clear_tiers:
                mask.append("pricing")
            if approval_required is not None:
                changed.approval_required = approval_required
                mask.append("approval_required")
            if prepaid is not None:
                changed.prepaid = prepaid
                mask.append("prepaid")
            require_changes(mask)
            request = cat.UpdatePlanRequest(plan=changed)
            request.update_mask.paths.extend(mask)
            if now or at is not None:
                request.effect = cat.VERSION_EFFECT_INSTANT
            if at is not None:
                request.effective_time.CopyFrom(timestamp_proto(at))
            emit(catalog.call(catalog.service.UpdatePlan, request))

    @plan_app.command("versions")
    def versions(
        plan: PlanRef, addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None
    ) -> None:
        """A plan's history: every version of its limits and prices, and when each took effect."""
        with admin_client(addr, token, _catalog_service_stub) as catalog:
            emit(catalog.call(catalog.service.ListPlanVersions, cat.ListPlanVersionsRequest(id=plan)))

    @plan_app.command("delete")
    def delete(
        plan: PlanRef, addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None
    ) -> None:
        """Delete a plan no API offers and no subscription uses."""
        with admin_client(addr, token, _catalog_service_stub) as catalog:
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
        output: Output = None,
    ) -> None:
        """Create an API (unpublished unless --publish)."""
        with admin_client(addr, token, _catalog_service_stub) as catalog:
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
        output: Output = None,
    ) -> None:
        """List APIs."""
        with admin_client(addr, token, _catalog_service_stub) as catalog:
            request = cat.ListApisRequest(published_only=published_only)
            emit(catalog.call(catalog.service.ListApis, request))

    @api_app.command("get")
    def get(
        api: ApiRef, addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None
    ) -> None:
        """Show one API."""
        with admin_client(addr, token, _catalog_service_stub) as catalog:
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
        output: Output = None,
    ) -> None:
        """Change the given fields of an API (publishing has its own commands)."""
        with admin_client(addr, token, _catalog_service_stub) as catalog:
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
    def publish(
        api: ApiRef, addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None
    ) -> None:
        """Make an API routable through the gateway."""
        with admin_client(addr, token, _catalog_service_stub) as catalog:
            request = cat.PublishApiRequest(id=_api_id(catalog, api))
            emit(catalog.call(catalog.service.PublishApi, request))

    @api_app.command("unpublish")
    def unpublish(
        api: ApiRef, addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None
    ) -> None:
        """Remove an API's route from the gateway."""
        with admin_client(addr, token, _catalog_service_stub) as catalog:
            request = cat.UnpublishApiRequest(id=_api_id(catalog, api))
            emit(catalog.call(catalog.service.UnpublishApi, request))

    @api_app.command("delete")
    def delete(
        api: ApiRef, addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None
    ) -> None:
        """Delete an unpublished API without live subscriptions."""
        with admin_client(addr, token, _catalog_service_stub) as catalog:
            request = cat.DeleteApiRequest(id=_api_id(catalog, api))
            emit(catalog.call(catalog.service.DeleteApi, request))

    api_app.add_typer(document_commands(), name="doc")
    return api_app


def register(app: typer.Typer) -> None:
    """Mounts `tollway plan ...` and `tollway api ...` on the main CLI."""
    app.add_typer(_plan_commands(), name="plan")
    app.add_typer(_api_commands(), name="api")

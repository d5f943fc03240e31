"""The catalog's persistence: plans and APIs in the one schema, with every rule the database must judge
(unique plan names, non-overlapping context paths, references between APIs, plans and subscriptions).

Every write validates its input (tollway.catalog.validation), then runs as one transaction that starts
by bumping the change revision: that takes the database's write lock (a row lock on PostgreSQL, the
write lock on SQLite), so catalog writers are serialized and the conflict checks that follow see every
committed change. A rejected write rolls back and changes nothing; `on_commit` runs only after a commit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tollway import schema
from tollway.catalog.limits import PlanLimits
from tollway.catalog.plan_versions import add_version, effective_instant, first_version, versions_of
from tollway.catalog.validation import (
    API_FIELDS,
    PLAN_FIELDS,
    ApiDraft,
    PlanDraft,
    PricingDraft,
    paths_overlap,
    validate_api,
    validate_plan,
)
from tollway.catalog.view import PublishedApi
from tollway.db import Database
from tollway.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from tollway.schema import LIVE_SUBSCRIPTION_STATES, new_id, utcnow
from tollway.vocabulary import VersionEffect

# Changes of these make a new version of a plan.
VERSIONED_FIELDS = frozenset({"limits", "pricing"})


@dataclass(frozen=True, slots=True)
class ApiRecord:
    """A stored API with the identifiers of the plans it is offered under, in their listed order."""

    api: schema.Api
    plan_ids: tuple[str, ...]


def _plan_columns(plan: PlanDraft) -> dict[str, Any]:
    return {
        "name": plan.name,
        "description": plan.description,
        **plan.limits.columns(),
        **plan.pricing.columns(),
        "approval_required": plan.approval_required,
        "prepaid": plan.prepaid,
    }


def plan_draft(row: schema.Plan) -> PlanDraft:
    """The stored plan as a draft (what an update starts from)."""
    return PlanDraft(
        name=row.name,
        description=row.description,
        limits=PlanLimits.from_row(row),
        pricing=PricingDraft.from_columns(row),
        approval_required=row.approval_required,
        prepaid=row.prepaid,
    )


def api_draft(record: ApiRecord) -> ApiDraft:
    api = record.api
    return ApiDraft(
        name=api.name,
        version=api.version,
        context_path=api.context_path,
        upstream_urls=tuple(api.upstream_urls),
        plan_ids=record.plan_ids,
        description=api.description,
    )


def _merge(current: Any, changes: Any, fields: Iterable[str], allowed: tuple[str, ...]) -> Any:
    fields = tuple(fields)
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise InvalidArgument(f"cannot update unknown or immutable fields: {', '.join(unknown)}")
    return replace(current, **{name: getattr(changes, name) for name in fields})


def _describe(api: schema.Api) -> str:
    return f"API {api.name} ({api.id})"


def _describe_plan(plan: schema.Plan) -> str:
    return f"plan {plan.name} ({plan.id})"


def _terms_changed(current: PlanDraft, plan: PlanDraft) -> bool:
    """Whether the limits or pricing differ from the stored ones (compared in canonical form; a stored
    plan that no longer validates, e.g. priced in a retired currency, counts as changed)."""
    try:
        stored = validate_plan(current)
    except InvalidArgument:
        return True
    return (stored.limits, stored.pricing) != (plan.limits, plan.pricing)


class CatalogStore:
    def __init__(
        self, db: Database, on_commit: Callable[[], None], clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._clock = clock
        self._db = db
        # Tells the change feed that a write committed, so this process reacts without polling.
        self._on_commit = on_commit

    @property
    def db(self) -> Database:
        """The database the catalog is kept in (the API documents live beside it)."""
        return self._db

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncSession]:
        async with self._db.session() as session:
            # First statement on purpose: takes the write lock before any conflict check (module doc).
            await self._db.record_change(session)
            yield session
            await session.commit()
        self._on_commit()

    # --- plans ----------------------------------------------------------------------------------------

    async def create_plan(self, draft: PlanDraft) -> schema.Plan:
        plan = validate_plan(draft)
        async with self._write() as session:
            await self._ensure_plan_name_free(session, plan.name, plan_id=None)
            now = self._clock()
            row = schema.Plan(id=new_id("plan"), **_plan_columns(plan), created_at=now, updated_at=now)
            session.add(row)
            # The version references the plan row: write it first.
            await session.flush()
            session.add(first_version(row))
        return row

    async def get_plan(self, key: str) -> schema.Plan:
        """By identifier or name."""
        async with self._db.session() as session:
            return await self._find_plan(session, key)

    async def list_plans(self) -> list[schema.Plan]:
        async with self._db.session() as session:
            result = await session.exec(select(schema.Plan).order_by(col(schema.Plan.name)))
            return list(result.all())

    async def update_plan(
        self,
        key: str,
        changes: PlanDraft,
        fields: Sequence[str],
        effect: VersionEffect = VersionEffect.NEXT_PERIOD,
        effective_time: datetime | None = None,
    ) -> schema.Plan:
        """Replaces the top-level `fields` (see validation.PLAN_FIELDS) of the plan with those of
        `changes`; the result must be a valid plan as a whole. A change of limits or pricing adds a
        version effective as `effect` and `effective_time` say (tollway/catalog/plan_versions.py)."""
        now = self._clock()
        if VERSIONED_FIELDS.isdisjoint(fields or PLAN_FIELDS) and (
            effect != VersionEffect.NEXT_PERIOD or effective_time is not None
        ):
            raise InvalidArgument("effect and effective_time apply to a change of limits or pricing only")
        effective_at = effective_instant(effect, effective_time, now)
        async with self._write() as session:
            row = await self._find_plan(session, key)
            current = plan_draft(row)
            plan = validate_plan(_merge(current, changes, fields, PLAN_FIELDS))
            if plan.name != row.name:
                await self._ensure_plan_name_free(session, plan.name, plan_id=row.id)
            if _terms_changed(current, plan):
                await add_version(session, row, plan.limits, plan.pricing, effect, effective_at, now)
            for name, value in _plan_columns(plan).items():
                setattr(row, name, value)
            row.updated_at = now
            session.add(row)
        return row

    async def plan_versions(self, key: str) -> list[schema.PlanVersion]:
        """A plan's versions, oldest first (one, from the row, for a plan never changed since versions
        were recorded)."""
        async with self._db.session() as session:
            row = await self._find_plan(session, key)
            return await versions_of(session, row.id) or [first_version(row)]

    async def delete_plan(self, key: str) -> None:
        async with self._write() as session:
            row = await self._find_plan(session, key)
            offering = await session.exec(
                select(schema.Api)
                .join(schema.ApiPlan, col(schema.ApiPlan.api_id) == col(schema.Api.id))
                .where(schema.ApiPlan.plan_id == row.id)
                .order_by(col(schema.Api.name), col(schema.Api.id))
            )
            apis = offering.all()
            if apis:
                raise FailedPrecondition(
                    f"{_describe_plan(row)} is offered by {', '.join(_describe(api) for api in apis)}; "
                    "remove it from their plan_ids first"
                )
            live, total = await self._subscription_counts(session, schema.Subscription.plan_id == row.id)
            if live:
                raise FailedPrecondition(
                    f"{_describe_plan(row)} is used by {live} live subscription(s); move or cancel them first"
                )
            if total:
                raise FailedPrecondition(
                    f"{_describe_plan(row)} is referenced by {total} ended subscription(s) kept for billing "
                    "history, so it cannot be deleted"
                )
            await session.delete(row)

    # --- APIs -----------------------------------------------------------------------------------------

    async def create_api(self, draft: ApiDraft) -> ApiRecord:
        api = validate_api(draft)
        async with self._write() as session:
            plan_ids = await self._resolve_plans(session, api.plan_ids)
            await self._ensure_api_free(session, api, api_id=None)
            row = schema.Api(
                id=new_id("api"),
                name=api.name,
                version=api.version,
                context_path=api.context_path,
                upstream_urls=list(api.upstream_urls),
                description=api.description,
            )
            session.add(row)
            # The links reference the API row: write it before them.
            await session.flush()
            self._add_plan_links(session, row.id, plan_ids)
        return ApiRecord(api=row, plan_ids=plan_ids)

    async def get_api(self, key: str) -> ApiRecord:
        """By identifier, name (when unambiguous) or "name:version"."""
        async with self._db.session() as session:
            row = await self._find_api(session, key)
            return ApiRecord(api=row, plan_ids=await self._plan_ids_of(session, row.id))

    async def list_apis(self, published_only: bool = False) -> list[ApiRecord]:
        async with self._db.session() as session:
            query = select(schema.Api).order_by(
                col(schema.Api.name), col(schema.Api.version), col(schema.Api.context_path)
            )
            if published_only:
                query = query.where(col(schema.Api.published).is_(True))
            rows = (await session.exec(query)).all()
            links = await session.exec(
                select(schema.ApiPlan.api_id, schema.ApiPlan.plan_id).order_by(
                    col(schema.ApiPlan.api_id), col(schema.ApiPlan.position)
                )
            )
            plan_ids: dict[str, list[str]] = {}
            for api_id, plan_id in links.all():
                plan_ids.setdefault(api_id, []).append(plan_id)
            return [ApiRecord(api=row, plan_ids=tuple(plan_ids.get(row.id, ()))) for row in rows]

    async def update_api(self, key: str, changes: ApiDraft, fields: Sequence[str]) -> ApiRecord:
        """Replaces the top-level `fields` (see validation.API_FIELDS) of the API with those of
        `changes`; publishing has its own methods."""
        async with self._write() as session:
            row = await self._find_api(session, key)
            current_plan_ids = await self._plan_ids_of(session, row.id)
            current = ApiRecord(api=row, plan_ids=current_plan_ids)
            api = validate_api(_merge(api_draft(current), changes, fields, API_FIELDS))
            plan_ids = await self._resolve_plans(session, api.plan_ids)
            await self._ensure_api_free(session, api, api_id=row.id)
            if row.published and not (plan_ids and api.upstream_urls):
                raise FailedPrecondition(
                    f"{_describe(row)} is published and must keep at least one plan and one upstream URL; "
                    "unpublish it first"
                )
            await self._ensure_no_live_subscriptions_on(session, row, set(current_plan_ids) - set(plan_ids))
            row.name = api.name
            row.version = api.version
            row.context_path = api.context_path
            row.upstream_urls = list(api.upstream_urls)
            row.description = api.description
            row.updated_at = utcnow()
            session.add(row)
            if plan_ids != current_plan_ids:
                await session.exec(delete(schema.ApiPlan).where(col(schema.ApiPlan.api_id) == row.id))
                self._add_plan_links(session, row.id, plan_ids)
        return ApiRecord(api=row, plan_ids=plan_ids)

    async def delete_api(self, key: str) -> None:
        async with self._write() as session:
            row = await self._find_api(session, key)
            if row.published:
                raise FailedPrecondition(f"{_describe(row)} is published; unpublish it first")
            live, total = await self._subscription_counts(session, schema.Subscription.api_id == row.id)
            if live:
                raise FailedPrecondition(
                    f"{_describe(row)} has {live} live subscription(s); cancel them first"
                )
            if total:
                raise FailedPrecondition(
                    f"{_describe(row)} is referenced by {total} ended subscription(s) kept for billing "
                    "history, so it cannot be deleted"
                )
            await session.exec(delete(schema.ApiPlan).where(col(schema.ApiPlan.api_id) == row.id))
            await session.delete(row)

    async def publish_api(self, key: str) -> ApiRecord:
        """Makes the API routable; it needs at least one plan and one upstream URL."""
        async with self._write() as session:
            row = await self._find_api(session, key)
            plan_ids = await self._plan_ids_of(session, row.id)
            if not plan_ids:
                raise FailedPrecondition(f"{_describe(row)} offers no plan; add plan_ids before publishing")
            if not row.upstream_urls:
                raise FailedPrecondition(
                    f"{_describe(row)} has no upstream URL; add upstream_urls before publishing"
                )
            if not row.published:
                row.published = True
                row.updated_at = utcnow()
                session.add(row)
        return ApiRecord(api=row, plan_ids=plan_ids)

    async def unpublish_api(self, key: str) -> ApiRecord:
        async with self._write() as session:
            row = await self._find_api(session, key)
            plan_ids = await self._plan_ids_of(session, row.id)
            if row.published:
                row.published = False
                row.updated_at = utcnow()
                session.add(row)
        return ApiRecord(api=row, plan_ids=plan_ids)

    async def published_apis(self) -> list[PublishedApi]:
        """What the gateway routes, sorted by context path (xds/ builds Envoy config from this)."""
        async with self._db.session() as session:
            rows = await session.exec(
                select(schema.Api)
                .where(col(schema.Api.published).is_(True))
                .order_by(col(schema.Api.context_path))
            )
            return [
                PublishedApi(
                    id=row.id,
                    name=row.name,
                    version=row.version,
                    context_path=row.context_path,
                    upstream_urls=tuple(row.upstream_urls),
                )
                for row in rows.all()
            ]

    # --- lookups and checks ---------------------------------------------------------------------------

    async def _find_plan(self, session: AsyncSession, key: str) -> schema.Plan:
        if not key:
            raise InvalidArgument("a plan identifier or name is required")
        row = await session.get(schema.Plan, key)
        if row is None:
            result = await session.exec(select(schema.Plan).where(schema.Plan.name == key))
            row = result.one_or_none()
        if row is None:
            raise NotFound(f"plan {key!r} not found")
        return row

    async def _find_api(self, session: AsyncSession, key: str) -> schema.Api:
        if not key:
            raise InvalidArgument("an API identifier or name is required")
        row = await session.get(schema.Api, key)
        if row is not None:
            return row
        by_name = select(schema.Api).order_by(col(schema.Api.version), col(schema.Api.id))
        matches = (await session.exec(by_name.where(schema.Api.name == key))).all()
        if not matches and ":" in key:
            name, _, version = key.rpartition(":")
            query = by_name.where(schema.Api.name == name, schema.Api.version == version)
            matches = (await session.exec(query)).all()
        if not matches:
            raise NotFound(f"API {key!r} not found")
        if len(matches) > 1:
            versions = ", ".join(f"{api.id} (version {api.version or 'unset'})" for api in matches)
            raise InvalidArgument(
                f"API name {key!r} is ambiguous: {versions}; use the identifier or name:version"
            )
        return matches[0]

    async def _ensure_plan_name_free(self, session: AsyncSession, name: str, plan_id: str | None) -> None:
        result = await session.exec(select(schema.Plan).where(schema.Plan.name == name))
        other = result.one_or_none()
        if other is not None and other.id != plan_id:
            raise AlreadyExists(f"a plan named {name!r} already exists ({other.id})")

    async def _ensure_api_free(self, session: AsyncSession, api: ApiDraft, api_id: str | None) -> None:
        """No other API may overlap the context path or have the same name and version."""
        query = select(schema.Api)
        if api_id is not None:
            query = query.where(schema.Api.id != api_id)
        others = (await session.exec(query.order_by(col(schema.Api.context_path)))).all()
        for other in others:
            if paths_overlap(api.context_path, other.context_path):
                if api.context_path == other.context_path:
                    raise AlreadyExists(
                        f'context_path "{api.context_path}" is already used by {_describe(other)}'
                    )
                case_only = not paths_overlap(api.context_path, other.context_path, ignore_case=False)
                hint = " (context paths are compared ignoring case)" if case_only else ""
                raise AlreadyExists(
                    f'context_path "{api.context_path}" overlaps "{other.context_path}" of '
                    f"{_describe(other)}{hint}"
                )
        for other in others:
            if other.name == api.name and other.version == api.version:
                raise AlreadyExists(
                    f"API {api.name} version {api.version or '(unset)'} already exists ({other.id})"
                )

    async def _resolve_plans(self, session: AsyncSession, refs: tuple[str, ...]) -> tuple[str, ...]:
        """Plan identifiers for `refs` (identifiers or names), in order; unknown ones are an error."""
        if not refs:
            return ()
        result = await session.exec(
            select(schema.Plan.id, schema.Plan.name).where(
                or_(col(schema.Plan.id).in_(refs), col(schema.Plan.name).in_(refs))
            )
        )
        rows = result.all()
        by_id = {plan_id: plan_id for plan_id, _ in rows}
        by_name = {name: plan_id for plan_id, name in rows}
        unknown = [ref for ref in refs if ref not in by_id and ref not in by_name]
        if unknown:
            raise InvalidArgument(f"plan_ids names unknown plans: {', '.join(unknown)}")
        resolved = tuple(by_id.get(ref) or by_name[ref] for ref in refs)
        if len(set(resolved)) != len(resolved):
            duplicate = next(plan_id for plan_id in resolved if resolved.count(plan_id) > 1)
            raise InvalidArgument(f"plan_ids lists plan {duplicate} twice (by identifier and by name)")
        return resolved

    async def _plan_ids_of(self, session: AsyncSession, api_id: str) -> tuple[str, ...]:
        result = await session.exec(
            select(schema.ApiPlan.plan_id)
            .where(schema.ApiPlan.api_id == api_id)
            .order_by(col(schema.ApiPlan.position))
        )
        return tuple(result.all())

    def _add_plan_links(self, session: AsyncSession, api_id: str, plan_ids: tuple[str, ...]) -> None:
        session.add_all(
            schema.ApiPlan(api_id=api_id, plan_id=plan_id, position=position)
            for position, plan_id in enumerate(plan_ids)
        )

    async def _subscription_counts(self, session: AsyncSession, condition: Any) -> tuple[int, int]:
        """(live, total) subscriptions matching `condition`."""
        result = await session.exec(
            select(schema.Subscription.state, func.count())
            .where(condition)
            .group_by(col(schema.Subscription.state))
        )
        counts = dict(result.all())
        live = sum(count for state, count in counts.items() if state in LIVE_SUBSCRIPTION_STATES)
        return live, sum(counts.values())

    async def _ensure_no_live_subscriptions_on(
        self, session: AsyncSession, api: schema.Api, removed_plan_ids: set[str]
    ) -> None:
        """An API may stop offering a plan only when no live subscription to it uses that plan."""
        if not removed_plan_ids:
            return
        result = await session.exec(
            select(schema.Subscription.plan_id, func.count())
            .where(
                schema.Subscription.api_id == api.id,
                col(schema.Subscription.plan_id).in_(removed_plan_ids),
                col(schema.Subscription.state).in_(LIVE_SUBSCRIPTION_STATES),
            )
            .group_by(col(schema.Subscription.plan_id))
            .order_by(col(schema.Subscription.plan_id))
        )
        in_use = result.all()
        if in_use:
            plans = ", ".join(f"{plan_id} ({count} live)" for plan_id, count in in_use)
            raise FailedPrecondition(
                f"{_describe(api)} cannot stop offering plans with live subscriptions: {plans}; "
                "move or cancel those subscriptions first"
            )

"""The one schema: every table Tollway keeps, as SQLModel classes (SQLite embedded, PostgreSQL in production).

This module holds the catalog, keys, subscriptions, limits and the change feed; the other areas keep
their tables beside it (schema_billing, schema_usage, schema_portal, schema_analytics), all registered
with the one metadata by tollway/db.py.

Money is stored as canonical decimal text so SQLite cannot turn it into a float; timestamps are UTC.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, Integer, UniqueConstraint, text
from sqlmodel import Field, SQLModel

# Re-exported for the modules that read it from here.
from tollway.subscription_states import LIVE_SUBSCRIPTION_STATES as LIVE_SUBSCRIPTION_STATES
from tollway.subscription_states import SubscriptionState
from tollway.vocabulary import QuotaPolicy, VersionEffect

_ID_ALPHABET = "abcdefghijkmnopqrstuvwxyz23456789"


def new_id(prefix: str, length: int = 12) -> str:
    """Readable random identifiers such as plan_k3x9m2q7ab4d (no 0/1/l to avoid misreading)."""
    return prefix + "_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything Tollway stores is UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def timestamp_column(nullable: bool = False) -> Any:
    column = Column(DateTime(timezone=True), nullable=nullable)
    if nullable:
        return Field(default=None, sa_column=column)
    return Field(default_factory=utcnow, sa_column=column)


class Plan(SQLModel, table=True):
    __tablename__ = "plan"

    id: str = Field(primary_key=True)
    name: str = Field(unique=True, index=True)
    description: str = ""
    # Limits: 0 means no limit.
    requests_per_second: int = 0
    requests_per_minute: int = 0
    requests_per_hour: int = 0
    requests_per_day: int = 0
    monthly_quota: int = 0
    quota_policy: str = QuotaPolicy.HARD.value
    # Shadow mode: throttle counts and reports what it would deny, but admits everything.
    shadow_mode: bool = False
    # Pricing: decimal strings in `currency`.
    currency: str = ""
    recurring_fee: str = "0"
    included_requests: int = 0
    unit_price: str = "0"
    # [{"up_to": int (0 = unbounded), "unit_price": str, "flat_fee": str}, ...]
    tiers: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # GRADUATED | VOLUME (vocabulary.TierMode); "" = graduated (and no tiers).
    tier_mode: str = ""
    # Package pricing: package_price per started block of package_size requests; 0 = off.
    package_size: int = 0
    package_price: str = "0"
    # Days of free trial from a subscription's start.
    trial_days: int = 0
    overage_price: str = "0"
    minimum_charge: str = "0"
    approval_required: bool = False
    # Admitted only while the application holds credit in `currency` (billing/credit.py); not versioned.
    prepaid: bool = False
    # The newest version (plan_version); its limits and pricing are this row's. 0 (a database from
    # before versions) means 1.
    version: int = 1
    # Usage classes charged: of success, client_error, upstream_fault; empty = success only. Throttled
    # and refused requests never are.
    billable_classes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = timestamp_column()
    updated_at: datetime = timestamp_column()


class PlanVersion(SQLModel, table=True):
    """One version of a plan's limits and prices (tollway/catalog/versions.py). A change of limits or
    prices adds a version; none is ever rewritten, so billing and the throttle apply each from when it
    took effect. The plan row carries the newest one's values."""

    __tablename__ = "plan_version"

    plan_id: str = Field(foreign_key="plan.id", primary_key=True, ondelete="CASCADE")
    version: int = Field(primary_key=True)
    # NEXT_PERIOD | INSTANT (vocabulary.VersionEffect).
    effect: str = VersionEffect.INSTANT.value
    # INSTANT: when it takes effect (a whole minute). NEXT_PERIOD: when it was made; it takes effect at
    # each subscription's first period start from then on.
    effective_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    created_at: datetime = timestamp_column()
    # The plan row's limit columns (PlanLimits.columns) and pricing columns (PricingDraft.columns).
    limits: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    pricing: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Api(SQLModel, table=True):
    __tablename__ = "api"

    id: str = Field(primary_key=True)
    name: str = Field(index=True)
    version: str = ""
    context_path: str = Field(unique=True)
    upstream_urls: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    published: bool = False
    description: str = ""
    created_at: datetime = timestamp_column()
    updated_at: datetime = timestamp_column()


class ApiPlan(SQLModel, table=True):
    """The plans an API is offered under."""

    __tablename__ = "api_plan"

    api_id: str = Field(foreign_key="api.id", primary_key=True, ondelete="CASCADE")
    plan_id: str = Field(foreign_key="plan.id", primary_key=True, ondelete="RESTRICT")
    position: int = 0


class Application(SQLModel, table=True):
    __tablename__ = "application"
    __table_args__ = (
        # Names are unique per owner among applications that are not deleted.
        Index(
            "uq_application_owner_name",
            "owner",
            "name",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: str = Field(primary_key=True)
    name: str
    owner: str = Field(default="", index=True)
    description: str = ""
    created_at: datetime = timestamp_column()
    deleted_at: datetime | None = timestamp_column(nullable=True)
    # The billing account (billing/) its invoices are addressed to; None: invoices name the application.
    billing_account_id: str | None = Field(default=None, index=True)


# The partial index below: one live subscription per (application, API).
_LIVE_SQL = "state IN (" + ", ".join(f"'{state}'" for state in LIVE_SUBSCRIPTION_STATES) + ")"


class Subscription(SQLModel, table=True):
    __tablename__ = "subscription"
    __table_args__ = (
        # One live subscription per application and API; cancelled ones stay for billing history.
        Index(
            "uq_subscription_live",
            "application_id",
            "api_id",
            unique=True,
            sqlite_where=text(_LIVE_SQL),
            postgresql_where=text(_LIVE_SQL),
        ),
    )

    id: str = Field(primary_key=True)
    application_id: str = Field(foreign_key="application.id", index=True)
    api_id: str = Field(foreign_key="api.id", index=True)
    plan_id: str = Field(foreign_key="plan.id", index=True)
    # A tollway/subscription_states.py SubscriptionState; moved only by tollway/lifecycle.py.
    state: str = SubscriptionState.ACTIVE.value
    state_reason: str = ""
    # Day of month the billing period starts on; 0 = calendar month in UTC.
    billing_anchor_day: int = 0
    created_at: datetime = timestamp_column()
    updated_at: datetime = timestamp_column()


class ApiKey(SQLModel, table=True):
    """An API key, stored only as a keyed hash (HMAC-SHA256 with the server secret) of the whole key."""

    __tablename__ = "api_key"

    key_id: str = Field(primary_key=True)
    application_id: str = Field(foreign_key="application.id", index=True)
    name: str = ""
    key_hash: str
    created_at: datetime = timestamp_column()
    expires_at: datetime | None = timestamp_column(nullable=True)
    revoked_at: datetime | None = timestamp_column(nullable=True)
    rotated_from: str | None = None


class BlockRule(SQLModel, table=True):
    __tablename__ = "block_rule"
    __table_args__ = (UniqueConstraint("target", "value", name="uq_block_rule_target_value"),)

    id: str = Field(primary_key=True)
    target: str  # API | APPLICATION | API_KEY | CLIENT_CIDR
    value: str
    reason: str = ""
    created_at: datetime = timestamp_column()


class TrafficLimit(SQLModel, table=True):
    """Limits shared by every subscription of one API (scope API) or of one application (scope
    APPLICATION), on top of each subscription's plan; enforced by throttle/. 0 = no limit."""

    __tablename__ = "traffic_limit"

    scope: str = Field(primary_key=True)  # API | APPLICATION
    target_id: str = Field(primary_key=True)
    requests_per_second: int = 0
    requests_per_minute: int = 0
    requests_per_hour: int = 0
    requests_per_day: int = 0
    updated_at: datetime = timestamp_column()


class ThrottleMemoryReplica(SQLModel, table=True):
    """A running throttle replica that keeps its counters in memory (TOLLWAY_RATELIMIT_STORE=memory),
    and its heartbeat. Two live ones on one database would each admit a plan's whole limit, so a
    second one refuses to start (throttle/replicas.py)."""

    __tablename__ = "throttle_memory_replica"

    id: str = Field(primary_key=True)
    host: str = ""
    pid: int = 0
    started_at: datetime = timestamp_column()
    last_seen: datetime = timestamp_column()


class ChangeRevision(SQLModel, table=True):
    """A counter bumped first in every transaction that changes what replicas hold: its row lock (and
    SQLite's write lock) orders those writers, so change-log sequence numbers follow commit order."""

    __tablename__ = "change_revision"

    id: int = Field(default=1, primary_key=True)
    value: int = 0
    # The change log was pruned up to and including this sequence number: a replica whose position is
    # below it missed changes and loads in full.
    pruned_through: int = 0


class ChangeLogEntry(SQLModel, table=True):
    """One changed entity (tollway/change_log.py): what replicas apply to their in-memory indexes."""

    __tablename__ = "change_log"

    # INTEGER on SQLite so it is the rowid (autoincrementing); BIGINT on PostgreSQL.
    seq: int | None = Field(
        default=None,
        sa_column=Column(
            BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
    )
    topic: str
    entity_id: str
    op: str
    at: datetime = timestamp_column()


class SubscriptionEvent(SQLModel, table=True):
    """Audit trail of a subscription's lifecycle, one row per transition (tollway/lifecycle.py).
    Billing reads approvals (APPROVED), plan changes (PLAN_CHANGED) and cancellations (CANCELLED)
    from it to split periods, so a later write to the subscription row cannot move those times."""

    __tablename__ = "subscription_event"

    id: int | None = Field(default=None, primary_key=True)
    subscription_id: str = Field(foreign_key="subscription.id", index=True)
    at: datetime = timestamp_column()
    # BLOCKED | UNBLOCKED | CANCELLED | APPROVED | REJECTED | SUSPENDED | RESUMED | PLAN_CHANGED
    kind: str
    actor: str = ""  # a subscription_states.Actor; empty on events written before actors were recorded
    from_state: str = ""
    to_state: str = ""
    from_plan_id: str = ""
    to_plan_id: str = ""
    reason: str = ""

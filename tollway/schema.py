"""The one schema: every table Tollway keeps, as SQLModel classes (SQLite embedded, PostgreSQL in production).

Money is stored as canonical decimal text so SQLite cannot turn it into a float; timestamps are UTC.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

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


def _timestamp(nullable: bool = False) -> Any:
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
    quota_policy: str = "HARD"  # HARD | SOFT
    # Pricing: decimal strings in `currency`.
    currency: str = ""
    recurring_fee: str = "0"
    included_requests: int = 0
    unit_price: str = "0"
    # [{"up_to": int (0 = unbounded), "unit_price": str}, ...]
    tiers: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    overage_price: str = "0"
    minimum_charge: str = "0"
    approval_required: bool = False
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class Api(SQLModel, table=True):
    __tablename__ = "api"

    id: str = Field(primary_key=True)
    name: str = Field(index=True)
    version: str = ""
    context_path: str = Field(unique=True)
    upstream_urls: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    published: bool = False
    description: str = ""
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


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
    created_at: datetime = _timestamp()
    deleted_at: datetime | None = _timestamp(nullable=True)


# States in which a subscription still holds its (application, API) slot.
LIVE_SUBSCRIPTION_STATES = ("ACTIVE", "PENDING_APPROVAL", "BLOCKED", "SUSPENDED")
_LIVE_SQL = "state IN ('ACTIVE', 'PENDING_APPROVAL', 'BLOCKED', 'SUSPENDED')"


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
    # ACTIVE | PENDING_APPROVAL | BLOCKED | SUSPENDED | CANCELLED | REJECTED
    state: str = "ACTIVE"
    state_reason: str = ""
    # Day of month the billing period starts on; 0 = calendar month in UTC.
    billing_anchor_day: int = 0
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class ApiKey(SQLModel, table=True):
    """An API key, stored only as a keyed hash (HMAC-SHA256 with the server secret) of the whole key."""

    __tablename__ = "api_key"

    key_id: str = Field(primary_key=True)
    application_id: str = Field(foreign_key="application.id", index=True)
    name: str = ""
    key_hash: str
    created_at: datetime = _timestamp()
    expires_at: datetime | None = _timestamp(nullable=True)
    revoked_at: datetime | None = _timestamp(nullable=True)
    rotated_from: str | None = None


class BlockRule(SQLModel, table=True):
    __tablename__ = "block_rule"
    __table_args__ = (UniqueConstraint("target", "value", name="uq_block_rule_target_value"),)

    id: str = Field(primary_key=True)
    target: str  # API | APPLICATION | API_KEY | CLIENT_CIDR
    value: str
    reason: str = ""
    created_at: datetime = _timestamp()


class ChangeRevision(SQLModel, table=True):
    """A counter bumped in the same transaction as every change gateway replicas must see."""

    __tablename__ = "change_revision"

    id: int = Field(default=1, primary_key=True)
    value: int = 0


# Usage summary granularities; minute windows roll up into the coarser ones.
USAGE_GRANULARITIES = ("minute", "hour", "day")


class UsageWindow(SQLModel, table=True):
    """What one (subscription, API, application, plan) did in one window, by outcome class.

    Written by usage/ with additive upserts (many replicas can write into one database); read by
    billing/. Requests refused by ext_authz have no subscription: they are counted per API and key id
    (subscription_id, application_id and plan_id empty, key_id set when the key id was known)."""

    __tablename__ = "usage_window"

    granularity: str = Field(primary_key=True)  # one of USAGE_GRANULARITIES
    window_start: datetime = Field(sa_column=Column(DateTime(timezone=True), primary_key=True))
    api_id: str = Field(primary_key=True)
    subscription_id: str = Field(primary_key=True, default="")
    application_id: str = Field(primary_key=True, default="")
    plan_id: str = Field(primary_key=True, default="")
    key_id: str = Field(primary_key=True, default="")
    # Outcome classes (disjoint; overage is the part of `success` admitted beyond a soft quota).
    success: int = 0
    overage: int = 0
    client_error: int = 0
    upstream_fault: int = 0
    throttled: int = 0
    unauthorized: int = 0
    ratelimit_error: int = 0
    request_bytes: int = 0
    response_bytes: int = 0
    latency_us_sum: int = 0
    latency_us_max: int = 0

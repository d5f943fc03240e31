"""The one schema: every table Tollway keeps, as SQLModel classes (SQLite embedded, PostgreSQL in production).

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
from tollway.vocabulary import QuotaPolicy

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
    quota_policy: str = QuotaPolicy.HARD.value
    # Shadow mode: throttle counts and reports what it would deny, but admits everything.
    shadow_mode: bool = False
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
    # Usage classes charged: of success, client_error, upstream_fault; empty = success only. Throttled
    # and refused requests never are.
    billable_classes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
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
    updated_at: datetime = _timestamp()


class ThrottleMemoryReplica(SQLModel, table=True):
    """A running throttle replica that keeps its counters in memory (TOLLWAY_RATELIMIT_STORE=memory),
    and its heartbeat. Two live ones on one database would each admit a plan's whole limit, so a
    second one refuses to start (throttle/replicas.py)."""

    __tablename__ = "throttle_memory_replica"

    id: str = Field(primary_key=True)
    host: str = ""
    pid: int = 0
    started_at: datetime = _timestamp()
    last_seen: datetime = _timestamp()


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
    at: datetime = _timestamp()


# --- billing/ (issue 5): invoices, billed usage, numbering, subscription history ----------------------

_OPEN_INVOICE_SQL = "state != 'VOID'"


class SubscriptionEvent(SQLModel, table=True):
    """Audit trail of a subscription's lifecycle, one row per transition (tollway/lifecycle.py).
    Billing reads approvals (APPROVED), plan changes (PLAN_CHANGED) and cancellations (CANCELLED)
    from it to split periods, so a later write to the subscription row cannot move those times."""

    __tablename__ = "subscription_event"

    id: int | None = Field(default=None, primary_key=True)
    subscription_id: str = Field(foreign_key="subscription.id", index=True)
    at: datetime = _timestamp()
    # BLOCKED | UNBLOCKED | CANCELLED | APPROVED | REJECTED | SUSPENDED | RESUMED | PLAN_CHANGED
    kind: str
    actor: str = ""  # a subscription_states.Actor; empty on events written before actors were recorded
    from_state: str = ""
    to_state: str = ""
    from_plan_id: str = ""
    to_plan_id: str = ""
    reason: str = ""


class Invoice(SQLModel, table=True):
    """One application's charges in one currency for one billing period. DRAFT → FINALIZED (numbered,
    immutable) → VOID (kept on record, number kept)."""

    __tablename__ = "invoice"
    __table_args__ = (
        # One open (draft or finalized) invoice per customer, currency and period.
        Index(
            "uq_invoice_open_period",
            "application_id",
            "currency",
            "period_start",
            "period_end",
            unique=True,
            sqlite_where=text(_OPEN_INVOICE_SQL),
            postgresql_where=text(_OPEN_INVOICE_SQL),
        ),
    )

    id: str = Field(primary_key=True)
    number: str | None = Field(default=None, unique=True)
    state: str = Field(default="DRAFT", index=True)  # DRAFT | FINALIZED | VOID
    application_id: str = Field(index=True)
    currency: str
    period_start: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))
    period_end: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    total: str = "0"
    # COMPLETE | INCOMPLETE | UNKNOWN: whether every Envoy node's usage for the period had arrived.
    usage_completeness: str = "UNKNOWN"
    completeness_note: str = ""
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()
    finalized_at: datetime | None = _timestamp(nullable=True)
    voided_at: datetime | None = _timestamp(nullable=True)
    void_reason: str = ""


class InvoiceCompletenessOverride(SQLModel, table=True):
    """The explicit decision that finalized an invoice while its period's usage was INCOMPLETE: who,
    why, when, and the completeness figure at that moment."""

    __tablename__ = "invoice_completeness_override"

    invoice_id: str = Field(primary_key=True, foreign_key="invoice.id", ondelete="CASCADE")
    decided_by: str
    reason: str
    decided_at: datetime = _timestamp()
    completeness: float = 1.0
    completeness_note: str = ""


class InvoiceLine(SQLModel, table=True):
    __tablename__ = "invoice_line"

    id: int | None = Field(default=None, primary_key=True)
    invoice_id: str = Field(foreign_key="invoice.id", index=True, ondelete="CASCADE")
    position: int = 0
    subscription_id: str = ""
    api_id: str = ""
    plan_id: str = ""
    kind: str  # billing/pricing.py line kinds
    description: str = ""
    quantity: str = "0"
    unit_price: str = "0"
    amount: str = "0"
    # The billed segment an ADJUSTMENT line corrects.
    adjusts_segment_id: int | None = None
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class BilledSegment(SQLModel, table=True):
    """What an invoice priced for one subscription under one plan in one period: the counts, the plan's
    pricing as it was, the charged amount. Late usage is found by comparing it with the usage table."""

    __tablename__ = "billed_segment"

    id: int | None = Field(default=None, primary_key=True)
    invoice_id: str = Field(foreign_key="invoice.id", index=True, ondelete="CASCADE")
    subscription_id: str = Field(index=True)
    api_id: str = ""
    plan_id: str = ""
    period_start: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    period_end: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    share: str = "1"  # the fee's share of the period, "num/den"
    pricing: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # Counts and charged amount billed so far: the invoice's, plus finalized adjustments.
    usage: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    amount: str = "0"


class BillingSequence(SQLModel, table=True):
    """Gapless invoice numbers: the counter row is incremented in the finalizing transaction."""

    __tablename__ = "billing_sequence"

    name: str = Field(primary_key=True)
    value: int = 0


class BillingIdempotency(SQLModel, table=True):
    """Idempotency keys of billing writes, committed in the same transaction as the data they protect."""

    __tablename__ = "billing_idempotency"

    key: str = Field(primary_key=True)
    operation: str
    result: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _timestamp()


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
    # Latency histogram (microseconds), one additive counter per bucket: upper bounds in
    # USAGE_LATENCY_BUCKETS_US, the last bucket open-ended. Enough for p50/p95/p99 by interpolation.
    latency_b00: int = 0
    latency_b01: int = 0
    latency_b02: int = 0
    latency_b03: int = 0
    latency_b04: int = 0
    latency_b05: int = 0
    latency_b06: int = 0
    latency_b07: int = 0
    latency_b08: int = 0
    latency_b09: int = 0
    latency_b10: int = 0
    latency_b11: int = 0
    latency_b12: int = 0
    latency_b13: int = 0


# Upper bounds (inclusive, microseconds) of latency_b00..latency_b12; latency_b13 is everything above.
USAGE_LATENCY_BUCKETS_US = (
    1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000,
    1_000_000, 2_000_000, 5_000_000, 10_000_000,
)  # fmt: skip


class UsageSeen(SQLModel, table=True):
    """Dedupe state of usage/: one row per access-log entry counted, written in the same transaction as
    the counts it protects, so a WAL replay after a crash cannot count an entry twice."""

    __tablename__ = "usage_seen"

    node_id: str = Field(primary_key=True)
    request_id: str = Field(primary_key=True)
    # Minute (epoch seconds) of the request's start; old rows are pruned by it.
    minute: int = Field(default=0, sa_column=Column(BigInteger, index=True, nullable=False))


class UsageNodeReceipt(SQLModel, table=True):
    """Entries counted per Envoy node and hour (additive, same transaction as the counts)."""

    __tablename__ = "usage_node_receipt"

    node_id: str = Field(primary_key=True)
    window_start: datetime = Field(sa_column=Column(DateTime(timezone=True), primary_key=True))
    received: int = 0


class UsageNodeSkip(SQLModel, table=True):
    """Entries received per Envoy node and hour that were not counted, by reason (usage/classify.py's
    SKIP_REASONS): with UsageNodeReceipt, every entry Envoy wrote is accounted for. Additive, written in
    the transaction of the counts (and dedupe rows) of the same frames."""

    __tablename__ = "usage_node_skip"

    node_id: str = Field(primary_key=True)
    window_start: datetime = Field(sa_column=Column(DateTime(timezone=True), primary_key=True))
    reason: str = Field(primary_key=True)
    skipped: int = 0


class UsageNodeSample(SQLModel, table=True):
    """A reading of one Envoy node's cumulative access-log counters (logs_written / logs_dropped)."""

    __tablename__ = "usage_node_sample"

    node_id: str = Field(primary_key=True)
    sampled_at: datetime = Field(sa_column=Column(DateTime(timezone=True), primary_key=True))
    logs_written: int = 0
    logs_dropped: int = 0


class UsageThrottle(SQLModel, table=True):
    """Throttled-out requests per minute and the plan limit that fired (from throttle's metadata)."""

    __tablename__ = "usage_throttle"

    window_start: datetime = Field(sa_column=Column(DateTime(timezone=True), primary_key=True))
    api_id: str = Field(primary_key=True)
    subscription_id: str = Field(primary_key=True, default="")
    application_id: str = Field(primary_key=True, default="")
    plan_id: str = Field(primary_key=True, default="")
    limit_name: str = Field(primary_key=True, default="")
    throttled: int = 0

"""Tables of usage/: per-window request counts by outcome, the replay guard, per-node receipts, skips and
samples (completeness), and throttled-out counts. Part of the one schema (registered by tollway/db.py).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, DateTime
from sqlmodel import Field, SQLModel

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

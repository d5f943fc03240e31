"""Usage by analytics dimension in the database: the additive upsert of usage_detail rows (inside
UsageStore.apply's transaction, for the records it claimed), and the queries UsageService answers with
them: a breakdown by API resource, status code and destination, and time series of an API's or a
consumer's requests, errors and latency percentiles."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, and_, func, select

from tollway.db import Database
from tollway.schema_analytics import UsageDetail
from tollway.schema_usage import UsageWindow
from usage.classify import OUTCOMES, percentile
from usage.details import DetailAggregate
from usage.upserts import AdditiveUpsert

DETAIL_KEYS = (
    "granularity",
    "window_start",
    "api_id",
    "subscription_id",
    "application_id",
    "method",
    "route",
    "status_code",
    "destination",
)
BREAKDOWN_DIMENSIONS = (
    "api_id",
    "subscription_id",
    "application_id",
    "method",
    "route",
    "status_code",
    "destination",
)
_BUCKETS = tuple(f"latency_b{i:02d}" for i in range(14))


def _table(model: type[Any]) -> Table:
    return model.__table__  # type: ignore[no-any-return]  # set by SQLModel at class creation


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def upsert_details(conn: Any, aggregate: DetailAggregate, upsert: AdditiveUpsert) -> None:
    """Adds the aggregate's rows through `upsert` (UsageStore's additive upsert of usage_detail)."""
    if not aggregate.rows:
        return
    rows = []
    # A fixed order of row locks, as for usage_window: concurrent replicas cannot deadlock.
    for key in sorted(aggregate.rows):
        row = dict(zip(DETAIL_KEYS, key, strict=True))
        row["window_start"] = datetime.fromtimestamp(key[1], UTC)
        row["requests"], row["latency_us_sum"] = aggregate.rows[key]
        rows.append(row)
    await upsert.execute(conn, rows)


def _filters(table: Table, api_id: str, application_id: str, subscription_id: str) -> list[Any]:
    conditions = []
    for column, value in (
        ("api_id", api_id),
        ("application_id", application_id),
        ("subscription_id", subscription_id),
    ):
        if value:
            conditions.append(table.c[column] == value)
    return conditions


async def breakdown(
    db: Database,
    start: datetime,
    end: datetime,
    group_by: tuple[str, ...],
    api_id: str = "",
    application_id: str = "",
    subscription_id: str = "",
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Requests and latency over [start, end) grouped by dimensions, most requests first. Day rows when
    the range is whole days, else hour rows (ranges are taken to the hour)."""
    table = _table(UsageDetail)
    whole_days = int(start.timestamp()) % 86400 == 0 and int(end.timestamp()) % 86400 == 0
    conditions = [
        table.c.granularity == ("day" if whole_days else "hour"),
        table.c.window_start >= start,
        table.c.window_start < end,
        *_filters(table, api_id, application_id, subscription_id),
    ]
    groups = [table.c[name] for name in group_by]
    requests = func.sum(table.c.requests).label("requests")
    statement = (
        select(*groups, requests, func.sum(table.c.latency_us_sum).label("latency_us_sum"))
        .where(and_(*conditions))
        .order_by(requests.desc(), *groups)
        .limit(limit)
    )
    if groups:
        statement = statement.group_by(*groups)
    async with db.engine.connect() as conn:
        rows = (await conn.execute(statement)).mappings().all()
    return [{name: (0 if value is None else value) for name, value in row.items()} for row in rows]


async def series(
    db: Database,
    granularity: str,
    start: datetime,
    end: datetime,
    api_id: str = "",
    application_id: str = "",
    subscription_id: str = "",
) -> list[dict[str, Any]]:
    """Per window of `granularity` in [start, end): the outcome counts summed over every row of the
    window (all subscriptions of an API, say), and the latency percentiles of their merged histogram."""
    table = _table(UsageWindow)
    conditions = [
        table.c.granularity == granularity,
        table.c.window_start >= start,
        table.c.window_start < end,
        *_filters(table, api_id, application_id, subscription_id),
    ]
    sums = [
        func.sum(table.c[name]).label(name) for name in (*OUTCOMES, "overage", "latency_us_sum", *_BUCKETS)
    ]
    statement = (
        select(table.c.window_start, *sums, func.max(table.c.latency_us_max).label("latency_us_max"))
        .where(and_(*conditions))
        .group_by(table.c.window_start)
        .order_by(table.c.window_start)
    )
    async with db.engine.connect() as conn:
        rows = (await conn.execute(statement)).mappings().all()
    found = []
    for row in rows:
        values = {name: int(value or 0) for name, value in row.items() if name != "window_start"}
        buckets = [values.pop(name) for name in _BUCKETS]
        values["requests"] = sum(values[name] for name in OUTCOMES)
        for name, fraction in (("latency_us_p50", 0.5), ("latency_us_p95", 0.95), ("latency_us_p99", 0.99)):
            values[name] = percentile(buckets, fraction)
        found.append({"window_start": _utc(row["window_start"]), **values})
    return found

"""The publisher's analytics of one API, from UsageService and BillingService: requests, errors and p95
latency over time; top consumers, throttled-out requests (by the limit that fired), resources, status
codes and destinations for the current period (the calendar month in UTC); and revenue by plan from
the period's invoices (drafts included: an invoice run refreshes them)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from portal.backend import AdminServices
from tollway.billing.v1 import billing_pb2
from tollway.protoconv import timestamp
from tollway.store.v1 import store_pb2
from tollway.usage.v1 import usage_pb2

SPANS = {
    "hour": (usage_pb2.GRANULARITY_HOUR, timedelta(hours=1), 24),
    "day": (usage_pb2.GRANULARITY_DAY, timedelta(days=1), 30),
}
TOP = 10


def month_of(now: datetime) -> tuple[datetime, datetime]:
    start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def floor_to(now: datetime, step: timedelta) -> datetime:
    seconds = int(now.timestamp())
    return datetime.fromtimestamp(seconds - seconds % int(step.total_seconds()), UTC)


@dataclass
class Consumer:
    application_id: str
    name: str
    owner: str
    counts: usage_pb2.UsageCounts


@dataclass
class ApiReport:
    api_id: str
    granularity: str
    period_start: datetime
    period_end: datetime
    points: list[usage_pb2.UsageSeriesPoint] = field(default_factory=list)
    starts: list[datetime] = field(default_factory=list)
    totals: usage_pb2.UsageCounts = field(default_factory=usage_pb2.UsageCounts)
    consumers: list[Consumer] = field(default_factory=list)
    throttled_by_limit: dict[str, int] = field(default_factory=dict)
    resources: list[usage_pb2.UsageBreakdownRow] = field(default_factory=list)
    statuses: list[usage_pb2.UsageBreakdownRow] = field(default_factory=list)
    destinations: list[usage_pb2.UsageBreakdownRow] = field(default_factory=list)
    # (plan id, currency) -> amount, from the period's invoices
    revenue: dict[tuple[str, str], Decimal] = field(default_factory=dict)

    def chart(self) -> dict[str, object]:
        """Every bucket of the span (zeros where nothing happened), for the page's chart."""
        by_start = {p.start_time.ToDatetime(tzinfo=UTC): p.counts for p in self.points}
        empty = usage_pb2.UsageCounts()
        counts = [by_start.get(start, empty) for start in self.starts]
        return {
            "x": [int(start.timestamp()) for start in self.starts],
            "requests": [c.requests for c in counts],
            "errors": [c.client_error + c.upstream_fault + c.ratelimit_error for c in counts],
            "throttled": [c.throttled for c in counts],
            "p95_ms": [round(c.latency_us_p95 / 1000, 1) if c.requests else None for c in counts],
        }


class Analytics:
    def __init__(self, admin: AdminServices) -> None:
        self._admin = admin

    async def report(self, api_id: str, granularity: str, now: datetime) -> ApiReport:
        enum, step, count = SPANS[granularity]
        period_start, period_end = month_of(now)
        report = ApiReport(api_id, granularity, period_start, period_end)
        end = floor_to(now, step) + step
        report.starts = [end - step * (count - i) for i in range(count)]
        api_filter = usage_pb2.UsageFilter(api_id=api_id)
        series = await self._admin.call(
            self._admin.usage.ListUsageSeries,
            usage_pb2.ListUsageSeriesRequest(
                granularity=enum,
                start_time=timestamp(report.starts[0]),
                end_time=timestamp(end),
                filter=api_filter,
            ),
            usage_pb2.ListUsageSeriesResponse,
        )
        report.points = list(series.points)
        # The period so far, to the next whole hour (whole windows).
        until = floor_to(now, timedelta(hours=1)) + timedelta(hours=1)
        window: dict[str, Any] = {"start_time": timestamp(period_start), "end_time": timestamp(until)}
        totals = await self._admin.call(
            self._admin.usage.GetUsageTotals,
            usage_pb2.GetUsageTotalsRequest(**window, filter=api_filter),
            usage_pb2.GetUsageTotalsResponse,
        )
        if totals.groups:
            report.totals = totals.groups[0].counts
        top = await self._admin.call(
            self._admin.usage.ListTopConsumers,
            usage_pb2.ListTopConsumersRequest(
                **window, dimension=usage_pb2.DIMENSION_APPLICATION, filter=api_filter, limit=TOP
            ),
            usage_pb2.ListTopConsumersResponse,
        )
        for group in top.consumers:
            if not group.application_id:
                continue  # refused requests belong to no application
            name, owner = await self._application(group.application_id)
            report.consumers.append(Consumer(group.application_id, name, owner, group.counts))
        throttled = await self._admin.call(
            self._admin.usage.ListThrottledWindows,
            usage_pb2.ListThrottledWindowsRequest(**window, filter=api_filter, limit=10_000),
            usage_pb2.ListThrottledWindowsResponse,
        )
        by_limit: dict[str, int] = defaultdict(int)
        for row in throttled.windows:
            by_limit[row.limit or "unknown"] += row.throttled
        report.throttled_by_limit = dict(sorted(by_limit.items()))
        for dimensions, target in (
            ((usage_pb2.BREAKDOWN_DIMENSION_METHOD, usage_pb2.BREAKDOWN_DIMENSION_ROUTE), report.resources),
            ((usage_pb2.BREAKDOWN_DIMENSION_STATUS_CODE,), report.statuses),
            ((usage_pb2.BREAKDOWN_DIMENSION_DESTINATION,), report.destinations),
        ):
            rows = await self._admin.call(
                self._admin.usage.ListUsageBreakdown,
                usage_pb2.ListUsageBreakdownRequest(
                    **window, filter=api_filter, group_by=dimensions, limit=20
                ),
                usage_pb2.ListUsageBreakdownResponse,
            )
            target.extend(rows.rows)
        report.revenue = await self._revenue(api_id, period_start, period_end)
        return report

    async def _application(self, application_id: str) -> tuple[str, str]:
        response = await self._admin.call(
            self._admin.store.GetApplication,
            store_pb2.GetApplicationRequest(id=application_id),
            store_pb2.GetApplicationResponse,
        )
        return response.application.name, response.application.owner

    async def _revenue(self, api_id: str, start: datetime, end: datetime) -> dict[tuple[str, str], Decimal]:
        invoices = await self._admin.call(
            self._admin.billing.ListInvoices,
            billing_pb2.ListInvoicesRequest(
                period_start=timestamp(start), period_end=timestamp(end), include_lines=True
            ),
            billing_pb2.ListInvoicesResponse,
        )
        revenue: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
        for invoice in invoices.invoices:
            if invoice.state == billing_pb2.INVOICE_STATE_VOID:
                continue
            for line in invoice.lines:
                if line.api_id != api_id:
                    continue
                try:
                    revenue[(line.plan_id, invoice.currency)] += Decimal(line.amount or "0")
                except InvalidOperation:
                    continue
        return dict(sorted(revenue.items()))

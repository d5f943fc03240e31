"""Usage windows as chart series (pure): one bucket per hour or day between two instants, requests per
outcome (successful, throttled, refused, errors) summed over the windows starting in each bucket."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from tollway.usage.v1 import usage_pb2

STEP: dict[int, timedelta] = {
    usage_pb2.GRANULARITY_HOUR: timedelta(hours=1),
    usage_pb2.GRANULARITY_DAY: timedelta(days=1),
}
OUTCOMES = ("successful", "throttled", "refused", "errors")


def floor(instant: datetime, granularity: int) -> datetime:
    instant = instant.astimezone(UTC)
    if granularity == usage_pb2.GRANULARITY_DAY:
        return instant.replace(hour=0, minute=0, second=0, microsecond=0)
    return instant.replace(minute=0, second=0, microsecond=0)


@dataclass
class Series:
    granularity: int
    starts: list[datetime] = field(default_factory=list)
    counts: dict[str, list[int]] = field(default_factory=lambda: {name: [] for name in OUTCOMES})

    def total(self, outcome: str) -> int:
        return sum(self.counts[outcome])

    def rows(self) -> list[tuple[datetime, dict[str, int]]]:
        return [
            (start, {name: self.counts[name][i] for name in OUTCOMES}) for i, start in enumerate(self.starts)
        ]

    def as_json(self, quota: int) -> dict[str, object]:
        """What the page's chart script draws: epoch seconds, one list per outcome, the quota line."""
        return {
            "x": [int(start.timestamp()) for start in self.starts],
            **{name: self.counts[name] for name in OUTCOMES},
            "quota": quota,
            "step": int(STEP[self.granularity].total_seconds()),
        }


def usage_series(
    windows: Iterable[usage_pb2.UsageWindow], start: datetime, end: datetime, granularity: int
) -> Series:
    """Buckets from the bucket holding `start` up to the one holding the instant before `end`."""
    step = STEP[granularity]
    series = Series(granularity)
    index: dict[datetime, int] = {}
    bucket = floor(start, granularity)
    while bucket < end:
        index[bucket] = len(series.starts)
        series.starts.append(bucket)
        for name in OUTCOMES:
            series.counts[name].append(0)
        bucket += step
    for window in windows:
        position = index.get(floor(window.start_time.ToDatetime(tzinfo=UTC), granularity))
        if position is None:
            continue
        counts = window.counts
        series.counts["successful"][position] += counts.success
        series.counts["throttled"][position] += counts.throttled
        series.counts["refused"][position] += counts.unauthorized
        series.counts["errors"][position] += (
            counts.client_error + counts.upstream_fault + counts.ratelimit_error
        )
    return series

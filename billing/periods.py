"""Billing periods (pure): UTC, half-open [start, end).

A subscription's period is the calendar month in UTC (anchor day 0), or runs from its anchor day of one
month to the anchor day of the next; in months shorter than the anchor day the period starts on the
month's last day (anchor 31 → Feb 28/29, then Mar 31).

Instants that cut a period (approval, plan change, cancellation) count in whole seconds: each is
taken down to its second (`whole_second`) before the period is split, so the parts of a period are
whole seconds that add up to exactly the period. Cutting at the raw instants while measuring each part
in truncated seconds priced 2,591,999/2,592,000 of a 30-day month for a change at a sub-second instant."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction

from tollway.errors import InvalidArgument

MAX_PERIOD = timedelta(days=366)


@dataclass(frozen=True, slots=True, order=True)
class Period:
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("periods are timezone-aware (UTC)")

    def contains(self, instant: datetime) -> bool:
        return self.start <= instant < self.end

    @property
    def seconds(self) -> int:
        return (self.end - self.start) // _SECOND

    def share(self, start: datetime, end: datetime) -> Fraction:
        """The part of this period [start, end) covers (clipped to the period), by whole seconds: both
        ends are taken down to their second first, so adjacent parts add up exactly."""
        lo, hi = max(whole_second(start), self.start), min(whole_second(end), self.end)
        if hi <= lo:
            return Fraction(0)
        return Fraction((hi - lo) // _SECOND, self.seconds)


_SECOND = timedelta(seconds=1)


def whole_second(instant: datetime) -> datetime:
    """`instant` taken down to its whole second: where a plan change, approval or cancellation cuts a
    period."""
    return instant.replace(microsecond=0) if instant.microsecond else instant


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def validate_period(start: datetime, end: datetime) -> Period:
    """An explicit period from a client: end after start, at most a year long."""
    start, end = _utc(start), _utc(end)
    if end <= start:
        raise InvalidArgument(f"period end ({end.isoformat()}) must be after its start ({start.isoformat()})")
    if end - start > MAX_PERIOD:
        raise InvalidArgument("a billing period may span at most 366 days")
    if start.microsecond or end.microsecond:
        raise InvalidArgument(
            "period_start and period_end must be whole seconds (periods are cut by the second)"
        )
    return Period(start, end)


def _anchor(year: int, month: int, day: int) -> datetime:
    if day == 0:
        day = 1
    last = calendar.monthrange(year, month)[1]
    return datetime(year, month, min(day, last), tzinfo=UTC)


def _add_months(year: int, month: int, delta: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + delta
    return index // 12, index % 12 + 1


def period_starting_in(year: int, month: int, anchor_day: int) -> Period:
    """The period of a subscription with `anchor_day` that starts in the given month."""
    if not 0 <= anchor_day <= 31:
        raise InvalidArgument(f"billing anchor day must be 0-31, got {anchor_day}")
    next_year, next_month = _add_months(year, month, 1)
    return Period(_anchor(year, month, anchor_day), _anchor(next_year, next_month, anchor_day))


def period_containing(instant: datetime, anchor_day: int = 0) -> Period:
    instant = _utc(instant)
    period = period_starting_in(instant.year, instant.month, anchor_day)
    if instant < period.start:
        year, month = _add_months(instant.year, instant.month, -1)
        period = period_starting_in(year, month, anchor_day)
    return period


def parse_month(text: str) -> tuple[int, int]:
    """'2026-11' → (2026, 11)."""
    try:
        year_text, month_text = text.split("-")
        year, month = int(year_text), int(month_text)
    except ValueError:
        raise InvalidArgument(f"billing month must look like 2026-11, got {text!r}") from None
    if not (2000 <= year <= 9998 and 1 <= month <= 12):
        raise InvalidArgument(f"billing month must look like 2026-11, got {text!r}")
    return year, month

"""Plans as limits: which counting windows a request falls into, and the limit of each. Pure, no I/O.

Second/minute/hour/day windows are fixed and aligned on the UTC epoch. The billing period is a real
month: the calendar month in UTC (billing_anchor_day 0), or the month starting on the anchor day
(clamped to the month's length, so an anchor of 31 starts on Feb 28/29). A period is half-open
[start, end). Every subscription always has a billing-period window, limited or not: billing reads it.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tollway.catalog.limits import PlanLimits
from tollway.vocabulary import LimitScope, WindowName

Clock = Callable[[], datetime]

# Short names for the window and scope words the throttle uses everywhere.
SECOND, MINUTE, HOUR, DAY = WindowName.SECOND, WindowName.MINUTE, WindowName.HOUR, WindowName.DAY
PERIOD = WindowName.BILLING_PERIOD
SUBSCRIPTION, API, APPLICATION = LimitScope.SUBSCRIPTION, LimitScope.API, LimitScope.APPLICATION
# Fixed windows and their length in seconds, shortest first.
FIXED_WINDOWS: tuple[tuple[WindowName, int], ...] = ((SECOND, 1), (MINUTE, 60), (HOUR, 3600), (DAY, 86400))
WINDOW_NAMES: tuple[WindowName, ...] = (*(name for name, _ in FIXED_WINDOWS), PERIOD)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class SharedLimits:
    """Limits shared by every subscription of one API or of one application; 0 = no limit."""

    scope: LimitScope  # API | APPLICATION
    target_id: str
    per_second: int = 0
    per_minute: int = 0
    per_hour: int = 0
    per_day: int = 0

    def limit_of(self, window: WindowName) -> int:
        return {SECOND: self.per_second, MINUTE: self.per_minute, HOUR: self.per_hour, DAY: self.per_day}[
            window
        ]


@dataclass(frozen=True, slots=True)
class Window:
    """One counting window a request falls into."""

    name: WindowName
    key: str  # the counter's key, unique per counted party, window kind and window start
    limit: int  # 0 = counted only
    # True: exceeding the limit denies; False: admitted (soft quota overage, or no limit).
    hard: bool
    start: datetime
    end: datetime
    # Whose requests it counts: the subscription, or all of an API's / an application's.
    scope: LimitScope = SUBSCRIPTION
    target_id: str = ""

    def seconds_until_reset(self, now: datetime) -> float:
        return max((self.end - now).total_seconds(), 0.0)


def _clamped(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, min(day, calendar.monthrange(year, month)[1]), tzinfo=UTC)


def _add_month(year: int, month: int, delta: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + delta
    return index // 12, index % 12 + 1


def billing_period(now: datetime, anchor_day: int = 0) -> tuple[datetime, datetime]:
    """The billing period [start, end) containing `now` (UTC)."""
    if not 0 <= anchor_day <= 31:
        raise ValueError(f"billing anchor day must be 0..31, got {anchor_day}")
    now = now.astimezone(UTC)
    day = anchor_day or 1
    start = _clamped(now.year, now.month, day)
    year, month = now.year, now.month
    if now < start:
        year, month = _add_month(year, month, -1)
        start = _clamped(year, month, day)
    end = _clamped(*_add_month(year, month, 1), day)
    return start, end


def fixed_window(now: datetime, seconds: int) -> tuple[datetime, datetime]:
    elapsed = (now - _EPOCH) // timedelta(seconds=1)
    start = _EPOCH + timedelta(seconds=elapsed - elapsed % seconds)
    return start, start + timedelta(seconds=seconds)


def subscription_tag(subscription_id: str) -> str:
    """Redis Cluster hash tag: every counter of one subscription lives in one slot, so one script can
    check and increment all of them atomically."""
    return "{sub:" + subscription_id + "}"


def windows_for(
    subscription_id: str,
    plan: PlanLimits | None,
    now: datetime,
    anchor_day: int = 0,
    shared: tuple[SharedLimits, ...] = (),
) -> list[Window]:
    """The windows of one request: the plan's limited fixed windows, always the billing period, then
    the limited windows shared with the API's other subscribers or the application's other
    subscriptions.

    Keys carry the window's start, not the plan: a plan change keeps what was used this window/period.
    Shared windows are keyed by {api:<id>} / {app:<id>}: with them a request's keys span several
    Redis Cluster slots (fine on a standalone Redis, which is what the store connects to)."""
    tag = subscription_tag(subscription_id)
    windows: list[Window] = []
    for name, seconds in FIXED_WINDOWS:
        limit = plan.limit_of(name) if plan else 0
        if limit:
            start, end = fixed_window(now, seconds)
            key = f"tw:{tag}:{name[0]}:{int(start.timestamp())}"
            windows.append(Window(name, key, limit, True, start, end))
    start, end = billing_period(now, anchor_day)
    quota = plan.monthly_quota if plan else 0
    hard = bool(quota) and not (plan and plan.soft_quota)
    windows.append(Window(PERIOD, f"tw:{tag}:p:{int(start.timestamp())}", quota, hard, start, end))
    for limits in shared:
        shared_tag = "{" + ("api" if limits.scope == API else "app") + ":" + limits.target_id + "}"
        for name, seconds in FIXED_WINDOWS:
            limit = limits.limit_of(name)
            if limit:
                start, end = fixed_window(now, seconds)
                key = f"tw:{shared_tag}:{name[0]}:{int(start.timestamp())}"
                windows.append(Window(name, key, limit, True, start, end, limits.scope, limits.target_id))
    return windows


def _slack(window: Window) -> int:
    return 32 * 86400 if window.name == PERIOD else 5


def ttl_seconds(window: Window, now: datetime) -> int:
    """How long a counter is kept: its window plus slack; billing periods one more period (at most
    31 days), so the quota RPC and billing reconciliation can still read the previous period."""
    remaining = window.seconds_until_reset(now)
    return int(remaining) + 1 + _slack(window)


def expire_at(window: Window) -> int:
    """When a counter may go (POSIX s): ttl_seconds as an instant, the same for every request of the
    window, so it can be computed once per window rather than once per request."""
    return int(window.end.timestamp()) + 1 + _slack(window)

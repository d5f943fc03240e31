"""When each version of a plan is in effect (pure): one rule shared by billing (which version prices a
stretch of a period) and the throttle (which version's limits apply to a request).

A change of a plan's limits or prices makes a new version; it never rewrites the past. It takes
effect either at the start of each subscription's next billing period (NEXT_PERIOD, the default:
every subscription keeps what it was sold until its period ends), or at a stated instant for every
subscription (INSTANT: "now" or later; an open period is split there and prorated like a plan
change). Version 1 is in effect from the beginning. At any instant the version in effect for a
subscription is the newest one whose effective instant (for its anchor day) has come: a later
INSTANT version supersedes an earlier NEXT_PERIOD one that had not started yet, so the version in
effect only ever moves forward.

INSTANT versions start on a whole minute: usage is metered per minute (usage windows), so a switch
inside a minute could not be told apart in the usage that billing prices, while at a whole minute
the usage before and after it is exact. "Now" is the next whole minute (at most 60 s away).
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tollway.vocabulary import VersionEffect

BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
_MINUTE = timedelta(minutes=1)


def next_whole_minute(instant: datetime) -> datetime:
    """`instant` when it is a whole minute, else the next one."""
    floor = instant.replace(second=0, microsecond=0)
    return floor if floor == instant else floor + _MINUTE


def _clamped(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, min(day, calendar.monthrange(year, month)[1]), tzinfo=UTC)


def period_bounds(instant: datetime, anchor_day: int) -> tuple[datetime, datetime]:
    """The billing period [start, end) containing `instant`: the calendar month (anchor 0) or from the
    anchor day (clamped to the month's length) to the next one; the same rule as billing/periods.py
    and throttle/limits.py."""
    instant = instant.astimezone(UTC)
    day = anchor_day or 1
    year, month = instant.year, instant.month
    start = _clamped(year, month, day)
    if instant < start:
        index = year * 12 + month - 2
        year, month = index // 12, index % 12 + 1
        start = _clamped(year, month, day)
    index = year * 12 + month
    return start, _clamped(index // 12, index % 12 + 1, day)


@dataclass(frozen=True, slots=True)
class VersionTiming:
    """When one version of a plan starts."""

    version: int
    effect: VersionEffect
    # INSTANT: when it takes effect. NEXT_PERIOD: when it was made (it takes effect at the first period
    # start of each subscription at or after this instant).
    at: datetime

    def effective_for(self, anchor_day: int) -> datetime:
        """When this version starts for a subscription with `anchor_day`."""
        if self.version <= 1:
            return BEGINNING
        if self.effect == VersionEffect.INSTANT:
            return self.at
        start, end = period_bounds(self.at, anchor_day)
        return start if start == self.at else end


def version_at(timings: Sequence[VersionTiming], instant: datetime, anchor_day: int) -> int:
    """The version in effect at `instant` for a subscription with `anchor_day` (1 when none is listed)."""
    current = 1
    for timing in timings:
        if timing.version > current and timing.effective_for(anchor_day) <= instant:
            current = timing.version
    return current


def switches(
    timings: Sequence[VersionTiming], start: datetime, end: datetime, anchor_day: int
) -> list[datetime]:
    """The instants in (start, end) at which the version in effect changes, in order."""
    candidates = sorted(
        {t.effective_for(anchor_day) for t in timings if start < t.effective_for(anchor_day) < end}
    )
    found: list[datetime] = []
    current = version_at(timings, start, anchor_day)
    for instant in candidates:
        version = version_at(timings, instant, anchor_day)
        if version != current:
            found.append(instant)
            current = version
    return found


def next_switch(timings: Sequence[VersionTiming], instant: datetime, anchor_day: int) -> datetime | None:
    """The first instant after `instant` at which the version in effect changes, None when none is
    scheduled (the throttle caches a subscription's windows until then)."""
    current = version_at(timings, instant, anchor_day)
    later = sorted(t.effective_for(anchor_day) for t in timings if t.version > current)
    for candidate in later:
        if candidate > instant and version_at(timings, candidate, anchor_day) != current:
            return candidate
    return None

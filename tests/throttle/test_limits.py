"""Pure window arithmetic: fixed windows, billing periods (calendar or anchored), keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from throttle.limits import (
    PERIOD,
    PlanLimits,
    billing_period,
    fixed_window,
    subscription_tag,
    ttl_seconds,
    windows_for,
)

instants = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


def test_calendar_month_is_the_default_period() -> None:
    start, end = billing_period(datetime(2026, 2, 14, 23, 59, tzinfo=UTC))
    assert (start, end) == (datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))


def test_december_rolls_into_the_next_year() -> None:
    start, end = billing_period(datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC))
    assert (start, end) == (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))


def test_anchored_period_starts_on_the_anchor_day() -> None:
    assert billing_period(datetime(2026, 3, 14, 23, 59, tzinfo=UTC), 15) == (
        datetime(2026, 2, 15, tzinfo=UTC),
        datetime(2026, 3, 15, tzinfo=UTC),
    )
    assert billing_period(datetime(2026, 3, 15, tzinfo=UTC), 15)[0] == datetime(2026, 3, 15, tzinfo=UTC)


def test_anchor_beyond_month_length_clamps_to_its_last_day() -> None:
    # Anchor 31: February's period starts on the 28th (29th in leap years).
    assert billing_period(datetime(2026, 3, 1, tzinfo=UTC), 31) == (
        datetime(2026, 2, 28, tzinfo=UTC),
        datetime(2026, 3, 31, tzinfo=UTC),
    )
    assert billing_period(datetime(2028, 2, 29, 12, tzinfo=UTC), 31)[0] == datetime(2028, 2, 29, tzinfo=UTC)


def test_local_times_are_read_as_utc_instants() -> None:
    # 00:30 on March 1st in UTC+2 is still February in UTC.
    local = datetime(2026, 3, 1, 0, 30, tzinfo=timezone(timedelta(hours=2)))
    assert billing_period(local)[0] == datetime(2026, 2, 1, tzinfo=UTC)


def test_bad_anchor_is_rejected() -> None:
    with pytest.raises(ValueError):
        billing_period(datetime(2026, 1, 1, tzinfo=UTC), 32)


@given(instants, st.integers(min_value=0, max_value=31))
def test_period_contains_now_and_is_one_month_long(now: datetime, anchor: int) -> None:
    start, end = billing_period(now, anchor)
    assert start <= now < end
    assert 28 <= (end - start).days <= 31
    # Consecutive periods tile time: the next one starts where this one ends.
    assert billing_period(end, anchor)[0] == end
    assert billing_period(start - timedelta(microseconds=1), anchor)[1] == start


@given(instants, st.sampled_from([1, 60, 3600, 86400]))
def test_fixed_windows_are_aligned_and_contain_now(now: datetime, seconds: int) -> None:
    start, end = fixed_window(now, seconds)
    assert start <= now < end
    assert (end - start).total_seconds() == seconds
    assert int(start.timestamp()) % seconds == 0


def test_windows_cover_limited_fixed_windows_and_always_the_period() -> None:
    now = datetime(2026, 5, 10, 12, 0, 30, tzinfo=UTC)
    plan = PlanLimits(requests_per_minute=5, requests_per_day=100, monthly_quota=1000, quota_policy="SOFT")
    windows = windows_for("sub_1", plan, now)
    assert [(w.name, w.limit, w.hard) for w in windows] == [
        ("minute", 5, True),
        ("day", 100, True),
        (PERIOD, 1000, False),
    ]
    unlimited = windows_for("sub_1", None, now)
    assert [(w.name, w.limit, w.hard) for w in unlimited] == [(PERIOD, 0, False)]


def test_all_keys_of_a_subscription_share_one_hash_tag() -> None:
    now = datetime(2026, 5, 10, tzinfo=UTC)
    plan = PlanLimits(
        requests_per_second=1, requests_per_minute=1, requests_per_hour=1, requests_per_day=1, monthly_quota=1
    )
    keys = [w.key for w in windows_for("sub_x", plan, now)]
    assert len(set(keys)) == 5
    assert all(subscription_tag("sub_x") in key for key in keys)
    # Only one {...} per key, so Redis Cluster hashes exactly the tag.
    assert all(key.count("{") == 1 for key in keys)


def test_keys_do_not_depend_on_the_plan() -> None:
    # A plan change keeps what was used this window and period.
    now = datetime(2026, 5, 10, tzinfo=UTC)
    small = windows_for("s", PlanLimits(requests_per_minute=5, monthly_quota=10), now)
    large = windows_for("s", PlanLimits(requests_per_minute=50, monthly_quota=100), now)
    assert [w.key for w in small] == [w.key for w in large]


def test_counters_outlive_their_window() -> None:
    now = datetime(2026, 5, 31, 23, 59, 59, tzinfo=UTC)
    minute, period = windows_for("s", PlanLimits(requests_per_minute=1), now)
    assert ttl_seconds(minute, now) >= 1
    # The previous period stays readable for reconciliation.
    assert ttl_seconds(period, now) > 31 * 86400

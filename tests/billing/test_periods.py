"""Periods and proration (pure): cuts at whole seconds, so the parts of a period add up to exactly 1."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.periods import Period, period_starting_in, validate_period, whole_second
from billing.segments import PlanChange, plan_at, plan_shares
from tollway.errors import InvalidArgument

NOV = period_starting_in(2026, 11, 0)  # 30 days: 2,592,000 seconds


def test_a_plan_change_at_a_sub_second_instant_leaves_no_second_unpriced() -> None:
    # The defect: cut at 10 Nov 12:00:00.5, each part truncated on its own → 2,591,999/2,592,000.
    at = datetime(2026, 11, 10, 12, 0, 0, 500_000, tzinfo=UTC)
    shares = plan_shares(NOV, NOV.start, None, "pro", [PlanChange(at, "basic", "pro")])
    assert sum(shares.values()) == 1
    assert shares["basic"] == Fraction(9 * 86400 + 12 * 3600, NOV.seconds)
    assert shares["pro"] == 1 - shares["basic"]


def test_sub_second_approval_and_cancellation_are_cut_at_their_second() -> None:
    approved = datetime(2026, 11, 3, 8, 0, 0, 999_999, tzinfo=UTC)
    cancelled = datetime(2026, 11, 20, 8, 0, 0, 1, tzinfo=UTC)
    shares = plan_shares(NOV, approved, cancelled, "basic", [])
    assert shares == {"basic": Fraction(17 * 86400, NOV.seconds)}


def test_the_plan_in_effect_counts_a_change_from_its_whole_second() -> None:
    at = datetime(2026, 11, 10, 12, 0, 0, 500_000, tzinfo=UTC)
    changes = [PlanChange(at, "basic", "pro")]
    assert plan_at(whole_second(at), "pro", changes) == "pro"
    assert plan_at(whole_second(at) - timedelta(seconds=1), "pro", changes) == "basic"


def test_explicit_periods_are_whole_seconds() -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(InvalidArgument, match="whole seconds"):
        validate_period(start, start + timedelta(days=1, microseconds=1))
    assert validate_period(start, start + timedelta(days=1)).seconds == 86400


instants = st.datetimes(
    min_value=datetime(2026, 11, 1),
    max_value=datetime(2026, 11, 30, 23, 59, 59, 999_999),
    timezones=st.just(UTC),
)
plans = st.sampled_from(["a", "b", "c"])


@given(st.lists(st.tuples(instants, plans), max_size=6), st.integers(0, 10**6))
def test_shares_of_a_covered_period_add_up_to_exactly_one(
    moves: list[tuple[datetime, str]], early: int
) -> None:
    moves.sort()
    changes: list[PlanChange] = []
    current = "a"
    for at, plan in moves:
        changes.append(PlanChange(at, current, plan))
        current = plan
    shares = plan_shares(NOV, NOV.start - timedelta(microseconds=early), None, current, changes)
    assert sum(shares.values()) == 1
    assert all(share >= 0 for share in shares.values())


@given(instants, instants)
def test_adjacent_parts_add_up(a: datetime, b: datetime) -> None:
    lo, hi = sorted((a, b))
    assert NOV.share(NOV.start, lo) + NOV.share(lo, hi) + NOV.share(hi, NOV.end) == 1


def test_period_seconds_are_exact() -> None:
    assert Period(NOV.start, NOV.end).seconds == 30 * 86400

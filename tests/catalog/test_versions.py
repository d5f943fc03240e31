"""When each plan version is in effect (pure): next-period and instant versions, per anchor day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from tollway.catalog.versions import (
    BEGINNING,
    VersionTiming,
    next_switch,
    next_whole_minute,
    period_bounds,
    switches,
    version_at,
)
from tollway.vocabulary import VersionEffect

NEXT, INSTANT = VersionEffect.NEXT_PERIOD, VersionEffect.INSTANT


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


V1 = VersionTiming(1, INSTANT, utc(2026, 1, 1))


def test_version_1_is_in_effect_from_the_beginning() -> None:
    assert V1.effective_for(0) == BEGINNING
    assert version_at([V1], utc(2000, 1, 1), 0) == 1


def test_a_next_period_version_starts_at_each_subscriptions_own_next_period() -> None:
    v2 = VersionTiming(2, NEXT, utc(2026, 11, 20, 9, 30))
    assert v2.effective_for(0) == utc(2026, 12, 1)  # calendar month
    assert v2.effective_for(15) == utc(2026, 12, 15)  # anchored on the 15th
    assert v2.effective_for(25) == utc(2026, 11, 25)  # its period starts on the 25th, after the change
    assert v2.effective_for(31) == utc(2026, 11, 30)  # anchor 31 in a 30-day month: the 30th
    timings = [V1, v2]
    assert version_at(timings, utc(2026, 11, 30, 23, 59, 59), 0) == 1
    assert version_at(timings, utc(2026, 12, 1), 0) == 2
    assert version_at(timings, utc(2026, 12, 10), 15) == 1


def test_a_change_made_exactly_at_a_period_start_takes_that_period() -> None:
    assert VersionTiming(2, NEXT, utc(2026, 12, 1)).effective_for(0) == utc(2026, 12, 1)


def test_a_later_instant_version_supersedes_a_pending_next_period_one() -> None:
    timings = [V1, VersionTiming(2, NEXT, utc(2026, 11, 10)), VersionTiming(3, INSTANT, utc(2026, 11, 20))]
    assert version_at(timings, utc(2026, 11, 15), 0) == 1
    assert version_at(timings, utc(2026, 11, 20), 0) == 3
    assert version_at(timings, utc(2026, 12, 5), 0) == 3  # version 2 never applies
    assert switches(timings, utc(2026, 11, 1), utc(2027, 1, 1), 0) == [utc(2026, 11, 20)]
    assert next_switch(timings, utc(2026, 11, 1), 0) == utc(2026, 11, 20)
    assert next_switch(timings, utc(2026, 11, 20), 0) is None


def test_whole_minutes() -> None:
    assert next_whole_minute(utc(2026, 11, 1, 10, 0)) == utc(2026, 11, 1, 10, 0)
    assert next_whole_minute(utc(2026, 11, 1, 10, 0, 0) + timedelta(microseconds=1)) == utc(
        2026, 11, 1, 10, 1
    )


def test_period_bounds_match_billing() -> None:
    from billing.periods import period_containing

    for anchor in (0, 1, 15, 28, 31):
        for day in range(0, 400, 7):
            instant = utc(2026, 1, 3) + timedelta(days=day, hours=5)
            period = period_containing(instant, anchor)
            assert period_bounds(instant, anchor) == (period.start, period.end)


instants = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)


@st.composite
def histories(draw: st.DrawFn) -> list[VersionTiming]:
    timings = [V1]
    for version in range(2, draw(st.integers(1, 6)) + 1):
        effect = draw(st.sampled_from([NEXT, INSTANT]))
        at = draw(instants)
        timings.append(VersionTiming(version, effect, next_whole_minute(at) if effect == INSTANT else at))
    return timings


@given(histories(), instants, instants, st.sampled_from([0, 1, 15, 31]))
def test_the_version_in_effect_only_moves_forward(timings: list[VersionTiming], a: datetime, b: datetime,
                                                  anchor: int) -> None:  # fmt: skip
    early, late = sorted((a, b))
    assert version_at(timings, early, anchor) <= version_at(timings, late, anchor)
    # The switches between them are exactly where the version changes.
    cuts = switches(timings, early, late, anchor)
    for cut in cuts:
        assert version_at(timings, cut - timedelta(microseconds=1), anchor) != version_at(
            timings, cut, anchor
        )
    assert (version_at(timings, early, anchor) != version_at(timings, late, anchor)) == bool(
        cuts
    ) or early == late
    nxt = next_switch(timings, early, anchor)
    assert nxt is None or nxt > early
    assert (nxt is not None and nxt <= late) == bool(cuts) or early == late

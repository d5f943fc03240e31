"""throttle/rls_response.py: the admitted answer written as bytes is, byte for byte, what the generated
classes write for the same decision; any other decision is left to the message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from envoy.service.ratelimit.v3 import rls_pb2
from hypothesis import given
from hypothesis import strategies as st

from throttle.limits import DAY, HOUR, MINUTE, PERIOD, SECOND, Window
from throttle.rls_response import admitted_bytes, rate_limit_response
from throttle.service import UNLIMITED, Decision, Outcome
from tollway import envoy_contract as contract

NOW = datetime(2026, 3, 14, 15, 9, 26, 535000, tzinfo=UTC)
NAMES = (SECOND, MINUTE, HOUR, DAY, PERIOD)


@st.composite
def windows(draw: st.DrawFn) -> Window:
    # Limits past one varint byte, resets from under a second (reported as 1) to a month.
    return Window(
        name=draw(st.sampled_from(NAMES)),
        key="k",
        limit=draw(st.integers(min_value=1, max_value=10**9)),
        hard=True,
        start=NOW - timedelta(seconds=1),
        end=NOW + timedelta(seconds=draw(st.floats(min_value=0, max_value=31 * 86400))),
    )


@st.composite
def outcomes(draw: st.DrawFn) -> Outcome:
    if draw(st.booleans()):
        return UNLIMITED
    limited = tuple(draw(st.lists(windows(), min_size=1, max_size=4)))
    window = draw(st.sampled_from(limited))
    remaining = draw(st.integers(min_value=0, max_value=window.limit))
    return Outcome(False, window, remaining, limited)


@given(st.lists(outcomes(), min_size=1, max_size=5))
def test_an_admitted_answer_is_what_the_generated_classes_write(answers: list[Outcome]) -> None:
    decision = Decision(False, answers, NOW)
    encoded = admitted_bytes(decision)
    assert encoded == rate_limit_response(decision).SerializeToString()
    # And reads back as the same message (what Envoy decodes).
    assert rls_pb2.RateLimitResponse.FromString(encoded) == rate_limit_response(decision)


def test_refusals_and_answers_with_metadata_go_through_the_message() -> None:
    window = Window(MINUTE, "k", 5, True, NOW, NOW + timedelta(seconds=30))
    refused = Decision(True, [Outcome(True, window, 0, (window,))], NOW, exceeded=window)
    overage = Decision(False, [Outcome(False, window, 0, (window,))], NOW, metadata={contract.OVERAGE: True})
    assert admitted_bytes(refused) is None
    assert admitted_bytes(overage) is None

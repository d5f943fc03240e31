"""Every scenario of `make bench` (bench/scenarios.py) is set up right: each runs for a second at a low,
fixed rate through the same code the benchmark measures with, on a plan and a bucket small enough
(SMOKE_LIMITS) that the rows that limit give both 200 and 429. Asserted per row: the mix of
statuses, that a wrong key is refused where keys are checked (B, C) and passes where they are not, and
that the access log really arrives (the no-op service counts every Check, ShouldRateLimit and log
entry in N and F; in C every entry reaches usage's WAL and usage counts every request), and in C that
every request went through the limits (the throttle's decisions). No timing is asserted; the gRPC and
Redis deadlines are long, so a busy machine cannot turn a slow answer into a 503 or a fail-open.

A Tollway mode this checkout does not have yet (its setting or `tollway up` option unknown) is
skipped with the reason the benchmark prints as "not available"."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.loadgen import LoadResult
from bench.measure import settle, wait_for_log
from bench.pacer import run_paced
from bench.scenarios import SCENARIOS, SMOKE_LIMITS, Lab, LabOptions, Scenario, Target

RATE, SECONDS = 100.0, 1.0
WRONG_RATE, WRONG_SECONDS = 20.0, 0.5


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    options = LabOptions(
        limits=SMOKE_LIMITS, authz_timeout_ms=10_000, ratelimit_timeout_ms=10_000, redis_timeout_ms=5_000
    )
    with Lab(Path(tmp_path_factory.mktemp("bench")), options) as started:
        yield started


def limits_requests(scenario: Scenario) -> bool:
    """B's local_ratelimit bucket and every Tollway plan are SMOKE_LIMITS; the others limit nothing."""
    return scenario.name == "B" or scenario.mode is not None


def send(target: Target, headers: dict[str, str], rate: float, seconds: float) -> LoadResult:
    return run_paced("127.0.0.1", target.port, target.path, headers, rate=rate, seconds=seconds)


def poll(read: Callable[[], int], until: int, timeout: float = 15.0) -> int:
    """`read()` once it reaches `until` (usage counts after its next flush), or its last value."""
    deadline = time.monotonic() + timeout
    value = read()
    while value < until and time.monotonic() < deadline:
        time.sleep(0.2)
        value = read()
    return value


def steady(read: Callable[[], int], quiet: float = 1.0, timeout: float = 15.0) -> int:
    """`read()` once it has not changed for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    value, since = read(), time.monotonic()
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.1)
        now = read()
        if now != value:
            value, since = now, time.monotonic()
    return value


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_is_set_up_right(lab: Lab, name: str) -> None:
    scenario = SCENARIOS[name]
    reason = scenario.unavailable()
    if reason:
        pytest.skip(f"not available in this checkout: {reason}")
    with scenario.open(lab) as target:
        settle(target)
        calls_before = target.calls() if target.calls is not None else None
        received_before = target.received() if target.received is not None else None
        # Usage counts what reached its WAL at its next flush: the readiness probes' too.
        counted_before = steady(target.counted) if target.counted is not None else 0
        decisions_before = target.decisions() if target.decisions is not None else None

        started = time.monotonic()
        good = send(target, target.headers, RATE, SECONDS)
        span = time.monotonic() - started
        wrong = send(target, target.wrong_headers(), WRONG_RATE, WRONG_SECONDS)
        sent = good.answered + wrong.answered
        assert (good.failed, wrong.failed) == (0, 0)
        assert sent == round(RATE * SECONDS) + round(WRONG_RATE * WRONG_SECONDS)

        if limits_requests(scenario):
            assert set(good.statuses) == {200, 429}, good.statuses
            # A run spanning `span` seconds (more than SECONDS when the machine is busy) touches at most
            # ceil(span) + 1 one-second windows, or the bucket and as many refills.
            assert good.statuses[200] <= SMOKE_LIMITS.per_second * (math.ceil(span) + 1)
        else:
            assert set(good.statuses) == {200}, good.statuses
        assert set(wrong.statuses) == {target.wrong_key_status}, wrong.statuses

        if decisions_before is not None and target.decisions is not None:
            decisions = target.decisions()
            decisions.subtract(decisions_before)
            # Every request with the right key went through the limits, and none failed open.
            assert decisions["ok"] + decisions["over_limit"] == good.answered, decisions
            assert decisions["ok"] == good.statuses[200] and decisions["over_limit"] == good.statuses[429]
        if received_before is not None:
            assert wait_for_log(target, received_before, sent) == sent
        if target.counted is not None:
            counted = poll(lambda: target.counted() - counted_before, until=sent)
            assert counted == sent
        if calls_before is not None and target.calls is not None:
            calls = {k: v - calls_before[k] for k, v in target.calls().items()}
            two_calls = scenario.chain == "tollway"
            assert calls == {"checks": sent, "rate_limits": sent if two_calls else 0, "log_entries": sent}

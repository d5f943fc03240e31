"""Pure classification of access-log entries, and the latency histogram."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.usage.usage_entries import entry
from tollway.schema_usage import USAGE_LATENCY_BUCKETS_US
from usage.classify import (
    CLIENT_ERROR,
    R_API,
    R_KEY,
    R_LATENCY,
    R_LIMIT,
    R_MINUTE,
    R_OUTCOME,
    R_OVERAGE,
    R_REQ,
    R_REQ_BYTES,
    R_RESP_BYTES,
    R_SUB,
    RATELIMIT_ERROR,
    SKIP_REASONS,
    SUCCESS,
    THROTTLED,
    UNAUTHORIZED,
    UPSTREAM_FAULT,
    Skip,
    classify,
    latency_bucket,
    percentile,
)

NOW = time.time()


def kind(item) -> int:
    return classify(item, "node-a", NOW)[R_OUTCOME]


@pytest.mark.parametrize(
    ("code", "flags", "expected"),
    [
        (200, {}, SUCCESS),
        (204, {}, SUCCESS),
        (302, {}, SUCCESS),
        (404, {}, CLIENT_ERROR),
        (0, {"downstream_remote_reset": True}, CLIENT_ERROR),
        (500, {}, UPSTREAM_FAULT),
        (503, {"upstream_connection_failure": True}, UPSTREAM_FAULT),
        (504, {"upstream_request_timeout": True}, UPSTREAM_FAULT),
        (200, {"upstream_remote_reset": True}, UPSTREAM_FAULT),
        (429, {"rate_limited": True}, THROTTLED),
        (429, {}, CLIENT_ERROR),  # the upstream's own 429 is not Tollway's throttle
        (500, {"rate_limit_service_error": True}, RATELIMIT_ERROR),
        (403, {"unauthorized_details": "EXTERNAL_SERVICE"}, UNAUTHORIZED),
    ],
)
def test_outcome_classes(code: int, flags: dict, expected: int) -> None:
    assert kind(entry(code, flags=flags)) == expected


def test_refused_request_is_counted_per_api_and_key_without_subscription() -> None:
    record = classify(entry(401, reason="key_invalid", key_id="key_9"), "node-a", NOW)
    assert record[R_OUTCOME] == UNAUTHORIZED
    assert record[R_API] == "api_1"
    assert record[R_KEY] == "key_9"
    assert record[R_SUB] == ""


def test_fields_of_a_record() -> None:
    start = 1_764_000_123.5
    record = classify(
        entry(200, request_id="rid-1", start=start, latency_ms=12.5, request_bytes=10, response_bytes=20),
        "node-a",
        start,
    )
    assert record[R_REQ] == "rid-1"
    assert record[R_MINUTE] == 1_764_000_120
    assert record[R_LATENCY] == 12_500
    assert (record[R_REQ_BYTES], record[R_RESP_BYTES]) == (10, 20)


def test_overage_and_limit_from_ratelimit_metadata() -> None:
    record = classify(entry(200, ratelimit={"overage": True, "window": "billing_period"}), "n", NOW)
    assert (record[R_OUTCOME], record[R_OVERAGE], record[R_LIMIT]) == (SUCCESS, 1, "")
    throttled = classify(entry(429, flags={"rate_limited": True}, ratelimit={"window": "minute"}), "n", NOW)
    assert (throttled[R_OUTCOME], throttled[R_OVERAGE], throttled[R_LIMIT]) == (THROTTLED, 0, "minute")


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        (entry(200, log_type=0), "not_downstream_end"),  # NotSet
        (entry(200, log_type=5), "not_downstream_end"),  # DownstreamPeriodic would double count
        (entry(404, authz={}, route_name="tollway_not_found"), "unrouted"),  # Envoy's catch-all 404
        (entry(400, authz={}, route_name=""), "before_routing"),  # e.g. a malformed request
        (entry(503, authz={}, route_name="api_api_1"), "authz_failed"),  # keymgr unreachable
        (entry(301, authz={}, route_name="https_redirect"), "not_api_route"),
        (entry(200, authz={"api_id": 42}), "bad_metadata"),
        (entry(200, api_id="x" * 500), "bad_metadata"),
        (entry(200, api_id="a\nb"), "bad_metadata"),
        (entry(200, start=NOW + 10 * 86400), "bad_time"),
        (entry(200, start=1.0), "bad_time"),
        (entry(200, request_bytes=1 << 50), "absurd_value"),
        (entry(200, latency_ms=10**12), "absurd_value"),
        (entry(1_000_000), "absurd_value"),
    ],
)
def test_hostile_or_useless_entries_are_skipped_with_a_reason(item, reason: str) -> None:
    with pytest.raises(Skip) as skipped:
        classify(item, "node-a", NOW)
    assert skipped.value.reason == reason


def test_every_skip_reason_is_stated() -> None:
    assert {"unrouted", "before_routing", "authz_failed", "not_api_route"} <= SKIP_REASONS.keys()
    assert all(SKIP_REASONS.values())


def test_missing_request_id_gets_a_stable_digest() -> None:
    item = entry(200, request_id="")
    first = classify(item, "n", NOW)[R_REQ]
    assert first.startswith("sha256:")
    assert classify(item, "n", NOW)[R_REQ] == first


@given(st.integers(min_value=0, max_value=10**11))
def test_latency_bucket_bounds(latency_us: int) -> None:
    index = latency_bucket(latency_us)
    bounds = (*USAGE_LATENCY_BUCKETS_US, float("inf"))
    assert latency_us <= bounds[index]
    assert index == 0 or latency_us > bounds[index - 1]


@given(st.lists(st.integers(min_value=0, max_value=20_000_000), min_size=1, max_size=300))
def test_percentiles_are_ordered_and_within_the_bucket_of_the_exact_value(latencies: list[int]) -> None:
    buckets = [0] * (len(USAGE_LATENCY_BUCKETS_US) + 1)
    for latency in latencies:
        buckets[latency_bucket(latency)] += 1
    p50, p95, p99 = (percentile(buckets, f) for f in (0.5, 0.95, 0.99))
    assert p50 <= p95 <= p99
    ordered = sorted(latencies)
    exact = ordered[min(len(ordered) - 1, max(0, -(-len(ordered) * 95 // 100) - 1))]
    # The estimate lies in the same bucket as the exact p95 (or at its edge).
    bucket = latency_bucket(exact)
    lower = USAGE_LATENCY_BUCKETS_US[bucket - 1] if bucket else 0
    upper = USAGE_LATENCY_BUCKETS_US[bucket] if bucket < len(USAGE_LATENCY_BUCKETS_US) else 2 * lower
    assert lower <= p95 <= upper


def test_malformed_ratelimit_metadata_does_not_cost_the_count() -> None:
    record = classify(
        entry(429, flags={"rate_limited": True}, ratelimit={"window": 5, "limit": "minute"}), "n", NOW
    )
    assert (record[R_OUTCOME], record[R_LIMIT]) == (THROTTLED, "minute")
    record = classify(entry(200, ratelimit={"window": {"x": 1}}), "n", NOW)
    assert record[R_OUTCOME] == SUCCESS


IDENTITY = {
    "api_id": "api_1",
    "subscription_id": "sub_1",
    "application_id": "app_1",
    "plan_id": "plan_1",
    "key_id": "key_1",
}


@pytest.mark.parametrize(
    ("default_mode", "fused_mode", "expected"),
    [
        # Throttled: the ratelimit filter's 429 (RL flag, its own metadata namespace), or Check's own.
        (
            {"code": 429, "flags": {"rate_limited": True}, "ratelimit": {"window": "minute"}},
            {
                "code": 429,
                "flags": {"unauthorized_details": "EXTERNAL_SERVICE"},
                "authz": {**IDENTITY, "reason": "rate_limited", "window": "minute"},
            },
            (THROTTLED, 0, "minute"),
        ),
        (
            {"code": 429, "flags": {"rate_limited": True}, "ratelimit": {"window": "billing_period"}},
            {
                "code": 429,
                "flags": {"unauthorized_details": "EXTERNAL_SERVICE"},
                "authz": {**IDENTITY, "reason": "quota_exceeded", "window": "billing_period"},
            },
            (THROTTLED, 0, "billing_period"),
        ),
        # Counters unreachable, failure mode deny: the filter's 503 (RLSE), or Check's.
        (
            {"code": 503, "flags": {"rate_limit_service_error": True}},
            {
                "code": 503,
                "flags": {"unauthorized_details": "EXTERNAL_SERVICE"},
                "authz": {**IDENTITY, "reason": "rate_limit_unavailable"},
            },
            (RATELIMIT_ERROR, 0, ""),
        ),
        # Beyond a soft quota: admitted, marked as overage.
        (
            {"code": 200, "ratelimit": {"overage": True, "overage_hits": 1, "window": "billing_period"}},
            {
                "code": 200,
                "authz": {**IDENTITY, "overage": True, "overage_hits": 1, "window": "billing_period"},
            },
            (SUCCESS, 1, ""),
        ),
        # Shadow mode: admitted, nothing else.
        (
            {"code": 200, "ratelimit": {"shadow_over_limit": True, "window": "minute"}},
            {"code": 200, "authz": {**IDENTITY, "shadow_over_limit": True, "window": "minute"}},
            (SUCCESS, 0, ""),
        ),
    ],
    ids=["rate_limited", "quota_exceeded", "limits_unavailable", "soft_overage", "shadow"],
)
def test_both_throttle_modes_give_the_same_record(
    default_mode: dict, fused_mode: dict, expected: tuple
) -> None:
    start = NOW - 30
    default_mode_record = classify(entry(**default_mode, request_id="r", start=start), "n", NOW)
    fused_mode_record = classify(entry(**fused_mode, request_id="r", start=start), "n", NOW)
    assert fused_mode_record == default_mode_record
    assert (
        fused_mode_record[R_OUTCOME],
        fused_mode_record[R_OVERAGE],
        fused_mode_record[R_LIMIT],
    ) == expected
    assert fused_mode_record[R_SUB] == "sub_1"  # filed under the subscription, not as a refusal


def test_a_refusal_for_the_key_stays_unauthorized_whatever_else_it_carries() -> None:
    record = classify(entry(401, authz={**IDENTITY, "reason": "key_revoked", "window": "minute"}), "n", NOW)
    assert (record[R_OUTCOME], record[R_SUB], record[R_LIMIT]) == (UNAUTHORIZED, "", "")

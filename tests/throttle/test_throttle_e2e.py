"""Plans as throttling tiers through a real Envoy, counters in the real Redis (127.0.0.1:6379).

Every test runs in both throttle modes with the same assertions: `ratelimit` (Envoy's ratelimit filter
calls ShouldRateLimit) and `authz` (the fused mode: Check applies the limits and answers 429 itself);
and each again with the counters on a real Redis Cluster (TOLLWAY_REDIS_MODE=cluster), where an API's
shared limit lives in another slot than the subscription's windows, so a request it refuses has its
subscription step taken back (test_api_level_limit_is_shared_across_applications).

The throttle's clock is injected (a FakeClock on the running service), so "the next window" is a
step of the clock rather than a minute of waiting. Each test uses subscriptions of its own."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from tests.e2e.harness import Response, Stack, start_stack, stop_stack
from tests.redis_cluster import RedisClusterNodes
from tests.throttle.throttle_fixtures import SHARED_REDIS_URL, FakeClock, unique
from tests.usage.usage_stack import subscription_totals
from throttle.process import Throttle
from tollway.catalog.v1 import catalog_pb2
from tollway.throttle.v1 import throttle_pb2, throttle_pb2_grpc
from tollway.usage.v1 import usage_pb2, usage_pb2_grpc
from tollway.vocabulary import ThrottleMode

pytestmark = pytest.mark.e2e

T0 = datetime(2031, 7, 14, 9, 0, 0, tzinfo=UTC)


# Both throttle modes, each with the counters on the standalone Redis and on a Redis Cluster.
SETUPS = [(mode, redis) for redis in ("standalone", "cluster") for mode in ThrottleMode]


@pytest.fixture(scope="module", params=SETUPS, ids=lambda setup: f"{setup[0]}-{setup[1]}")
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    mode, redis_mode = request.param
    redis: dict[str, Any] = {"redis_url": SHARED_REDIS_URL}
    if redis_mode == "cluster":
        cluster: RedisClusterNodes = request.getfixturevalue("redis_cluster")
        redis = {"redis_mode": "cluster", "redis_nodes": cluster.nodes}
    started = start_stack(
        Path(tmp_path_factory.mktemp("throttle")),
        ratelimit_store="redis",
        # Counting is what is tested here, not the deadline: on a busy machine a 50 ms Redis call
        # timed out now and then, and failure mode allow then admitted a request uncounted.
        redis_timeout_ms=1000,
        throttle_mode=mode,
        **redis,
    )
    try:
        # A fresh Redis (the session's new cluster) has no durable-quota marker yet: the throttle
        # rebuilds at start, refusing HARD quotas meanwhile (test_quota_rebuild.py). Tests start after.
        throttle = started.process.find(Throttle)
        assert throttle is not None and throttle.service.rebuilder is not None
        deadline = time.monotonic() + 30
        while not throttle.store.seeded or throttle.service.rebuilder.running:
            assert time.monotonic() < deadline, "the initial quota rebuild did not finish"
            time.sleep(0.05)
        yield started
    finally:
        stop_stack(started)


@pytest.fixture
def clock(stack: Stack) -> FakeClock:
    fake = FakeClock(T0)
    throttle = stack.process.find(Throttle)
    assert throttle is not None
    throttle.service.clock = fake
    return fake


@pytest.fixture(scope="module")
def quota(stack: Stack) -> throttle_pb2_grpc.QuotaServiceStub:
    return throttle_pb2_grpc.QuotaServiceStub(stack._channel)


class Client:
    """One subscribed application with its key, on one API."""

    def __init__(self, stack: Stack, api: catalog_pb2.Api, plan: catalog_pb2.Plan) -> None:
        self.stack = stack
        app = stack.create_application(unique("app"))
        self.subscription = stack.subscribe(app.id, api.id, plan.id)
        self.key = stack.issue_key(app.id).key
        self.path = api.context_path + "/items"

    def get(self) -> Response:
        return self.stack.get(self.path, {"x-api-key": self.key})

    def warm_up(self) -> None:
        """Waits until key, subscription and plan reached every component (the successful call counts)."""
        response, _ = self.stack.wait_for_status(self.path, 200, {"x-api-key": self.key})
        assert response.status == 200, response.body


def _plan(stack: Stack, **limits: Any) -> catalog_pb2.Plan:
    shadow = limits.pop("shadow_mode", False)
    return stack.create_plan(unique("plan"), limits=catalog_pb2.PlanLimits(shadow_mode=shadow, **limits))


def _api(stack: Stack, plans: list[catalog_pb2.Plan]) -> catalog_pb2.Api:
    return stack.create_api(unique("api"), f"/{unique('t')}/v1", [p.id for p in plans])


def _problem(response: Response) -> dict[str, Any]:
    assert response.status == 429, response.body
    assert response.headers["content-type"] == "application/problem+json"
    problem = json.loads(response.body)
    assert problem["status"] == 429
    return problem


def test_five_per_minute(stack: Stack, clock: FakeClock) -> None:
    plan = _plan(stack, requests_per_minute=5)
    client = Client(stack, _api(stack, [plan]), plan)
    client.warm_up()
    clock.advance(minutes=1)
    responses = [client.get() for _ in range(6)]
    assert [r.status for r in responses] == [200, 200, 200, 200, 200, 429]
    assert [r.headers["x-ratelimit-remaining"] for r in responses[:5]] == ["4", "3", "2", "1", "0"]
    assert all(r.headers["x-ratelimit-limit"].startswith("5, 5;w=60") for r in responses)
    assert {r.headers["x-ratelimit-reset"] for r in responses} == {"60"}
    denied = responses[5]
    assert denied.headers["retry-after"] == "60"
    assert denied.headers["x-envoy-ratelimited"] == "true"
    assert denied.headers["x-ratelimit-remaining"] == "0"
    assert "x-envoy-ratelimited" not in responses[0].headers
    problem = _problem(denied)
    assert (problem["window"], problem["limit"], problem["reason"]) == ("minute", 5, "rate_limited")
    assert problem == {
        "type": "https://tollway.dev/problems/rate_limited",
        "title": "Too Many Requests",
        "status": 429,
        "detail": "The plan's per-minute limit of 5 requests is reached. Retry after 60 s.",
        "reason": "rate_limited",
        "window": "minute",
        "scope": "subscription",
        "limit": 5,
        "retry_after": 60,
        "reset_time": "2031-07-14T09:02:00Z",
    }
    # Still denied later in the same minute, with a shorter wait.
    clock.advance(seconds=45)
    again = client.get()
    assert again.status == 429 and again.headers["retry-after"] == "15"
    # The next window admits again.
    clock.advance(seconds=15)
    assert client.get().status == 200


def test_rate_limit_headers_describe_every_window(stack: Stack, clock: FakeClock) -> None:
    """Per-second, per-minute and per-hour limits on one plan: X-RateLimit-Limit's quota policy names
    all three (the IETF draft's list), Remaining and Reset are the window that refuses next."""
    plan = _plan(stack, requests_per_second=50, requests_per_minute=3, requests_per_hour=100)
    client = Client(stack, _api(stack, [plan]), plan)
    client.warm_up()
    clock.advance(hours=1)
    first, second = client.get(), client.get()
    policy = '3, 50;w=1;name="second", 3;w=60;name="minute", 100;w=3600;name="hour"'
    assert [r.status for r in (first, second)] == [200, 200]
    assert first.headers["x-ratelimit-limit"] == policy, first.headers
    assert [r.headers["x-ratelimit-remaining"] for r in (first, second)] == ["2", "1"]
    assert first.headers["x-ratelimit-reset"] == "60"
    client.get()
    refused = client.get()
    assert refused.status == 429
    assert refused.headers["x-ratelimit-limit"] == policy
    assert refused.headers["x-ratelimit-remaining"] == "0"


def test_throttled_requests_reach_usage_with_the_window_that_fired(stack: Stack, clock: FakeClock) -> None:
    plan = _plan(stack, requests_per_hour=100, monthly_quota=1000, requests_per_minute=1)
    client = Client(stack, _api(stack, [plan]), plan)
    client.warm_up()
    clock.advance(minutes=1)
    assert [client.get().status for _ in range(3)] == [200, 429, 429]
    # Envoy's access log carries the ratelimit dynamic metadata to usage/, which files the 429s
    # under the window named in it (ListThrottledWindows' limit).
    now = datetime.now(UTC)
    request = usage_pb2.ListThrottledWindowsRequest(
        start_time=Timestamp(seconds=int(now.timestamp()) - 3600),
        end_time=Timestamp(seconds=int(now.timestamp()) + 3600),
        filter=usage_pb2.UsageFilter(subscription_id=client.subscription.id),
    )
    stub = usage_pb2_grpc.UsageServiceStub(stack._channel)
    deadline = time.monotonic() + 15  # Envoy flushes its access-log buffer every second
    windows: list[Any] = []
    while time.monotonic() < deadline:
        windows = list(stack.call(stub.ListThrottledWindows, request).windows)
        if sum(w.throttled for w in windows) >= 2:
            break
        time.sleep(0.1)
    assert sum(w.throttled for w in windows) == 2
    assert {w.limit for w in windows} == {"minute"}
    assert {w.plan_id for w in windows} == {plan.id}


def test_soft_quota_overage_and_shadow_plans_are_metered_as_admitted(stack: Stack, clock: FakeClock) -> None:
    soft = _plan(stack, monthly_quota=2, quota_policy=catalog_pb2.QUOTA_POLICY_SOFT)
    shadow = _plan(stack, requests_per_minute=1, shadow_mode=True)
    beyond, shadowed = Client(stack, _api(stack, [soft]), soft), Client(stack, _api(stack, [shadow]), shadow)
    beyond.warm_up()
    shadowed.warm_up()
    clock.advance(minutes=1)
    assert [beyond.get().status for _ in range(3)] == [200, 200, 200]
    assert [shadowed.get().status for _ in range(3)] == [200, 200, 200]
    # The warm-up's request used one of the two: the last two are beyond the soft quota.
    soft_counts = subscription_totals(stack, beyond.subscription.id, 4)
    assert (soft_counts.requests, soft_counts.success, soft_counts.overage) == (4, 4, 2)
    assert soft_counts.throttled == 0
    shadow_counts = subscription_totals(stack, shadowed.subscription.id, 4)
    assert (shadow_counts.requests, shadow_counts.success, shadow_counts.overage) == (4, 4, 0)
    assert shadow_counts.throttled == 0


def test_two_plans_on_one_api_and_a_plan_change(stack: Stack, clock: FakeClock) -> None:
    small = _plan(stack, requests_per_minute=2)
    large = _plan(stack, requests_per_minute=4)
    api = _api(stack, [small, large])
    on_small, on_large = Client(stack, api, small), Client(stack, api, large)
    on_small.warm_up()
    on_large.warm_up()
    clock.advance(minutes=1)
    assert [on_small.get().status for _ in range(3)] == [200, 200, 429]
    assert [on_large.get().status for _ in range(5)] == [200, 200, 200, 200, 429]

    change = catalog_pb2.Plan(id=small.id, limits=catalog_pb2.PlanLimits(requests_per_minute=3))
    request = catalog_pb2.UpdatePlanRequest(plan=change, update_mask=FieldMask(paths=["limits"]))
    stack.call(stack.catalog.UpdatePlan, request)
    # The raised limit applies without restart and without resetting this minute's 2 used requests.
    response, _ = stack.wait_for_status(on_small.path, 200, {"x-api-key": on_small.key}, timeout=1.0)
    assert response.status == 200 and response.headers["x-ratelimit-remaining"] == "0"
    assert on_small.get().status == 429
    assert on_large.get().status == 429


def test_denied_requests_do_not_consume_the_monthly_quota(
    stack: Stack, clock: FakeClock, quota: throttle_pb2_grpc.QuotaServiceStub
) -> None:
    plan = _plan(stack, requests_per_minute=2, monthly_quota=7)
    client = Client(stack, _api(stack, [plan]), plan)
    client.warm_up()
    request = throttle_pb2.GetSubscriptionQuotaRequest(subscription_id=client.subscription.id)
    warm = stack.call(quota.GetSubscriptionQuota, request).windows[-1].used
    admitted, reasons = 0, []
    for _ in range(6):
        clock.advance(minutes=1)
        for _ in range(5):  # 3 of every 5 are burst denials
            response = client.get()
            if response.status == 200:
                admitted += 1
            else:
                reasons.append(_problem(response)["reason"])
    assert warm + admitted == 7
    assert reasons.count("rate_limited") >= 9
    assert reasons[-1] == "quota_exceeded"
    windows = {w.window: w for w in stack.call(quota.GetSubscriptionQuota, request).windows}
    period = windows[throttle_pb2.WINDOW_BILLING_PERIOD]
    assert (period.limit, period.used, period.remaining) == (7, 7, 0)
    assert period.start_time.ToDatetime(tzinfo=UTC) == datetime(2031, 7, 1, tzinfo=UTC)
    assert period.reset_time.ToDatetime(tzinfo=UTC) == datetime(2031, 8, 1, tzinfo=UTC)
    minute = windows[throttle_pb2.WINDOW_MINUTE]
    # The quota ran out minutes ago: this minute admitted nothing, its denials counted nothing.
    assert (minute.limit, minute.used) == (2, 0)
    # A new billing period starts from zero.
    clock.current = datetime(2031, 8, 1, tzinfo=UTC)
    assert client.get().status == 200


def test_shadow_plan_reports_without_denying(stack: Stack, clock: FakeClock) -> None:
    plan = _plan(stack, requests_per_minute=1, shadow_mode=True)
    client = Client(stack, _api(stack, [plan]), plan)
    client.warm_up()
    responses = [client.get() for _ in range(3)]
    assert [r.status for r in responses] == [200, 200, 200]
    assert responses[-1].headers["x-ratelimit-remaining"] == "0"


def test_quota_rpc_answers_and_refuses_bad_input(
    stack: Stack, clock: FakeClock, quota: throttle_pb2_grpc.QuotaServiceStub
) -> None:
    plan = _plan(stack, requests_per_second=50, requests_per_day=1000)
    client = Client(stack, _api(stack, [plan]), plan)
    client.warm_up()
    answer = stack.call(
        quota.GetSubscriptionQuota,
        throttle_pb2.GetSubscriptionQuotaRequest(subscription_id=client.subscription.id),
    )
    assert answer.plan_id == plan.id and not answer.shadow_mode
    windows = [(w.window, w.limit) for w in answer.windows]
    assert windows == [
        (throttle_pb2.WINDOW_SECOND, 50),
        (throttle_pb2.WINDOW_DAY, 1000),
        (throttle_pb2.WINDOW_BILLING_PERIOD, 0),  # no monthly quota, still counted for billing
    ]
    day = answer.windows[1]
    assert day.used >= 1 and day.remaining == 1000 - day.used
    assert answer.windows[2].used == day.used
    for request, code in (
        (throttle_pb2.GetSubscriptionQuotaRequest(), grpc.StatusCode.INVALID_ARGUMENT),
        (throttle_pb2.GetSubscriptionQuotaRequest(subscription_id="sub_unknown"), grpc.StatusCode.NOT_FOUND),
    ):
        with pytest.raises(grpc.RpcError) as failure:
            stack.call(quota.GetSubscriptionQuota, request)
        assert failure.value.code() == code
    with pytest.raises(grpc.RpcError) as unauthenticated:
        quota.GetSubscriptionQuota(
            throttle_pb2.GetSubscriptionQuotaRequest(subscription_id=client.subscription.id), timeout=5
        )
    assert unauthenticated.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_api_level_limit_is_shared_across_applications(
    stack: Stack, clock: FakeClock, quota: throttle_pb2_grpc.QuotaServiceStub
) -> None:
    plan = _plan(stack, requests_per_minute=100)
    api = _api(stack, [plan])
    first, second = Client(stack, api, plan), Client(stack, api, plan)
    first.warm_up()
    second.warm_up()
    limit = throttle_pb2.TrafficLimit(
        scope=throttle_pb2.LIMIT_SCOPE_API, target_id=api.id, requests_per_minute=3
    )
    stack.call(quota.SetTrafficLimit, throttle_pb2.SetTrafficLimitRequest(limit=limit))
    request = throttle_pb2.GetSubscriptionQuotaRequest(subscription_id=first.subscription.id)
    deadline = time.monotonic() + 1.0
    while not any(
        w.scope == throttle_pb2.LIMIT_SCOPE_API
        for w in stack.call(quota.GetSubscriptionQuota, request).windows
    ):
        assert time.monotonic() < deadline, "the API limit did not reach the throttle within a second"
        time.sleep(0.02)
    clock.advance(minutes=1)
    statuses = [first.get().status, second.get().status, first.get().status]
    assert statuses == [200, 200, 200]
    denied = second.get()
    problem = _problem(denied)
    assert (problem["scope"], problem["window"], problem["limit"]) == ("api", "minute", 3)
    windows = stack.call(quota.GetSubscriptionQuota, request).windows
    api_window = next(w for w in windows if w.scope == throttle_pb2.LIMIT_SCOPE_API)
    assert (api_window.target_id, api_window.limit, api_window.used) == (api.id, 3, 3)
    own_minute = next(
        w
        for w in windows
        if w.scope == throttle_pb2.LIMIT_SCOPE_SUBSCRIPTION and w.window == throttle_pb2.WINDOW_MINUTE
    )
    assert own_minute.used == 2


def test_cli_quota_and_traffic_limits(stack: Stack, clock: FakeClock) -> None:
    from typer.testing import CliRunner

    from tollway.app.cli import app

    plan = _plan(stack, requests_per_minute=5)
    api = _api(stack, [plan])
    client = Client(stack, api, plan)
    client.warm_up()
    clock.advance(minutes=1)
    assert [client.get().status for _ in range(2)] == [200, 200]
    common = ["--addr", stack.settings.admin_addr, "--token", stack.settings.admin_token]
    runner = CliRunner()

    def run(*args: str) -> dict[str, Any]:
        result = runner.invoke(app, [*args, *common])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    report = run("quota", client.subscription.id)
    assert report["plan_id"] == plan.id
    windows = {w["window"]: w for w in report["windows"]}
    # Counts are numbers; a window without a limit (the billing period here) says so.
    assert (windows["WINDOW_MINUTE"]["limit"], windows["WINDOW_MINUTE"]["used"]) == (5, 2)
    assert windows["WINDOW_MINUTE"]["remaining"] == 3
    assert windows["WINDOW_BILLING_PERIOD"]["limit"] == "unlimited"
    assert windows["WINDOW_BILLING_PERIOD"]["remaining"] == "unlimited"
    # A past instant reads that minute's counter.
    past = run("quota", client.subscription.id, "--at", "2031-07-14T09:00:30Z")
    assert {w["window"]: w["used"] for w in past["windows"]}["WINDOW_MINUTE"] == 1

    limit = run("limits", "set", "--api", api.id, "--per-minute", "100", "--per-day", "1000")["limit"]
    assert (limit["scope"], limit["target_id"], limit["requests_per_minute"]) == (
        "LIMIT_SCOPE_API",
        api.id,
        100,
    )
    assert api.id in {row["target_id"] for row in run("limits", "list")["limits"]}
    # The shared limit reaches the throttle through the change feed and shows in the quota report.
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        scopes = {(w["scope"], w["window"]) for w in run("quota", client.subscription.id)["windows"]}
        if ("LIMIT_SCOPE_API", "WINDOW_DAY") in scopes:
            break
        time.sleep(0.1)
    assert ("LIMIT_SCOPE_API", "WINDOW_MINUTE") in scopes
    run("limits", "delete", "--api", api.id)
    assert api.id not in {row["target_id"] for row in run("limits", "list")["limits"]}

    # Bad input: clear errors, nothing changed.
    for args in (
        ["limits", "set", "--per-minute", "5"],  # no target
        ["limits", "set", "--api", api.id, "--application", "app_x"],  # two targets
        ["limits", "delete", "--api", api.id],  # already gone: NOT_FOUND
        ["quota", "sub_unknown"],
        ["quota", client.subscription.id, "--at", "yesterday"],
    ):
        result = runner.invoke(app, [*args, *common])
        assert result.exit_code != 0, args
    assert "NOT_FOUND" in runner.invoke(app, ["quota", "sub_unknown", *common]).output
    assert api.id not in {row["target_id"] for row in run("limits", "list")["limits"]}

"""Counters unreachable, through a real Envoy: the configured failure mode decides the HTTP answer, in
both throttle modes alike (ratelimit: Envoy's ratelimit filter applies it; authz: Check does).
Redis is pointed at a port nothing listens on (the shared Redis stays untouched)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.harness import start_stack, stop_stack
from tests.throttle.throttle_fixtures import free_port, unique
from tests.usage.usage_stack import subscription_totals
from throttle.process import Throttle
from tollway.catalog.v1 import catalog_pb2
from tollway.vocabulary import ThrottleMode

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("throttle_mode", list(ThrottleMode), ids=str)
@pytest.mark.parametrize(("mode", "status"), [("allow", 200), ("deny", 503)])
def test_redis_down_follows_the_failure_mode(
    tmp_path: Path, mode: str, status: int, throttle_mode: ThrottleMode
) -> None:
    stack = start_stack(
        tmp_path,
        ratelimit_store="redis",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        ratelimit_failure_mode=mode,
        throttle_mode=throttle_mode,
    )
    try:
        plan = stack.create_plan(unique("plan"), limits=catalog_pb2.PlanLimits(requests_per_minute=1))
        api = stack.create_api(unique("api"), f"/{unique('f')}/v1", [plan.id])
        app = stack.create_application(unique("app"))
        subscription = stack.subscribe(app.id, api.id, plan.id)
        key = stack.issue_key(app.id).key
        path = api.context_path + "/x"
        response, _ = stack.wait_for_status(path, status, {"x-api-key": key})
        assert response.status == status, response.body
        # Every request gets the same answer: nothing is counted, nothing is limited or let through
        # beyond what the mode says.
        assert [stack.get(path, {"x-api-key": key}).status for _ in range(3)] == [status] * 3
        if mode == "allow":
            # No counters, so no rate-limit headers rather than made-up ones.
            assert "x-ratelimit-remaining" not in response.headers
        throttle = stack.process.find(Throttle)
        assert throttle is not None
        result = "store_unavailable_allowed" if mode == "allow" else "store_unavailable_denied"
        assert throttle.metrics.decisions[(plan.id, result)] >= 4
        # usage/ files them under the subscription: admitted, or refused by the rate limiter's failure.
        counts = subscription_totals(stack, subscription.id, 4)
        if mode == "allow":
            assert counts.success == counts.requests >= 4
        else:
            assert counts.ratelimit_error == counts.requests >= 4
    finally:
        stop_stack(stack)

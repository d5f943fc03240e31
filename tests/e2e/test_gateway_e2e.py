"""Through a real Envoy: keys, subscriptions, blocking, rotation, publishing, NACK handling; in both
throttle modes (ratelimit, and authz where Check also applies the limits), with the same assertions."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from tests.e2e.harness import Response, Stack, start_stack, stop_stack
from tollway.catalog.v1 import catalog_pb2
from tollway.store.v1 import store_pb2
from tollway.vocabulary import ThrottleMode
from xds.process import Xds
from xds.resources import ROUTE_CONFIG_NAME, ROUTE_TYPE, build_resources

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=list(ThrottleMode), ids=str)
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    started = start_stack(Path(tmp_path_factory.mktemp("gateway")), throttle_mode=request.param)
    try:
        yield started
    finally:
        stop_stack(started)


@pytest.fixture(scope="module")
def world(stack: Stack) -> dict[str, object]:
    """One published API with a plan, a subscribed application with a key, and an unsubscribed one."""
    plan = stack.create_plan("e2e-basic")
    api = stack.create_api("weather", "/weather/v1", [plan.id])
    subscribed = stack.create_application("subscribed-app")
    stack.subscribe(subscribed.id, api.id, plan.id)
    key = stack.issue_key(subscribed.id)
    stranger = stack.create_application("stranger-app")
    stranger_key = stack.issue_key(stranger.id)
    stack.wait_for_status("/weather/v1/today", 200, {"x-api-key": key.key})
    # The stranger's key was issued last: until keymgr applied it, it is an unknown key (401).
    stack.wait_for_status("/weather/v1/today", 403, {"x-api-key": stranger_key.key})
    return {"plan": plan, "api": api, "app": subscribed, "key": key, "stranger_key": stranger_key}


def assert_problem(response: Response, status: int, reason: str) -> dict[str, object]:
    assert response.status == status, response.body
    assert response.headers["content-type"] == "application/problem+json"
    problem = json.loads(response.body)
    assert problem["status"] == status
    assert problem["reason"] == reason
    assert problem["title"] and problem["type"]
    return problem


def test_valid_key_reaches_upstream_without_the_key(stack: Stack, world: dict) -> None:
    key = world["key"].key
    response = stack.get("/weather/v1/today?city=Oslo", {"x-api-key": key})
    assert response.status == 200
    seen = response.json()
    assert seen["path"] == "/today?city=Oslo"
    assert "x-api-key" not in seen["headers"]
    assert key not in json.dumps(seen)
    assert seen["headers"]["x-tollway-application"] == world["app"].id


def test_bearer_key_is_accepted_and_removed(stack: Stack, world: dict) -> None:
    key = world["key"].key
    response = stack.get("/weather/v1/today", {"authorization": f"Bearer {key}"})
    assert response.status == 200
    assert "authorization" not in response.json()["headers"]


def test_client_cannot_spoof_identity_headers(stack: Stack, world: dict) -> None:
    response = stack.get(
        "/weather/v1/x", {"x-api-key": world["key"].key, "x-tollway-application": "app_evil"}
    )
    assert response.json()["headers"]["x-tollway-application"] == world["app"].id


def test_missing_key_is_401_with_problem_json(stack: Stack, world: dict) -> None:
    response = stack.get("/weather/v1/today")
    assert_problem(response, 401, "key_missing")
    assert "www-authenticate" in response.headers


def test_malformed_and_unknown_keys_are_401(stack: Stack, world: dict) -> None:
    assert_problem(stack.get("/weather/v1/today", {"x-api-key": "not-a-key"}), 401, "key_malformed")
    real = world["key"].key
    forged = real[:-4] + ("aaaa" if not real.endswith("aaaa") else "bbbb")
    problem = assert_problem(stack.get("/weather/v1/today", {"x-api-key": forged}), 401, "key_invalid")
    assert forged not in json.dumps(problem)
    unknown = "tw_" + "a" * 12 + "_" + "b" * 32
    assert_problem(stack.get("/weather/v1/today", {"x-api-key": unknown}), 401, "key_invalid")


def test_unsubscribed_application_is_403(stack: Stack, world: dict) -> None:
    response = stack.get("/weather/v1/today", {"x-api-key": world["stranger_key"].key})
    assert_problem(response, 403, "not_subscribed")


def test_unknown_path_is_404_problem(stack: Stack, world: dict) -> None:
    response = stack.get("/nowhere", {"x-api-key": world["key"].key})
    assert response.status == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_revoked_key_is_401_within_one_second(stack: Stack, world: dict) -> None:
    app = stack.create_application("revoke-app")
    stack.subscribe(app.id, world["api"].id, world["plan"].id)
    issued = stack.issue_key(app.id)
    headers = {"x-api-key": issued.key}
    stack.wait_for_status("/weather/v1/a", 200, headers)
    stack.call(stack.store.RevokeApiKey, store_pb2.RevokeApiKeyRequest(key_id=issued.api_key.key_id))
    response, elapsed = stack.wait_for_status("/weather/v1/a", 401, headers)
    assert_problem(response, 401, "key_revoked")
    assert elapsed < 1.0


def test_expired_key_is_401(stack: Stack, world: dict) -> None:
    app = stack.create_application("expiry-app")
    stack.subscribe(app.id, world["api"].id, world["plan"].id)
    issued = stack.issue_key(app.id, ttl=Duration(seconds=2))
    headers = {"x-api-key": issued.key}
    assert stack.wait_for_status("/weather/v1/a", 200, headers)[0].status == 200
    time.sleep(2.1)
    assert_problem(stack.get("/weather/v1/a", headers), 401, "key_expired")


def test_blocked_application_is_403_until_unblocked(stack: Stack, world: dict) -> None:
    app = stack.create_application("blocked-app")
    stack.subscribe(app.id, world["api"].id, world["plan"].id)
    headers = {"x-api-key": stack.issue_key(app.id).key}
    stack.wait_for_status("/weather/v1/a", 200, headers)
    rule = store_pb2.BlockRule(target=store_pb2.BLOCK_TARGET_APPLICATION, value=app.id, reason="abuse")
    created = stack.call(stack.store.CreateBlockRule, store_pb2.CreateBlockRuleRequest(block_rule=rule))
    response, elapsed = stack.wait_for_status("/weather/v1/a", 403, headers)
    assert_problem(response, 403, "application_blocked")
    assert elapsed < 1.0
    stack.call(stack.store.DeleteBlockRule, store_pb2.DeleteBlockRuleRequest(id=created.block_rule.id))
    assert stack.wait_for_status("/weather/v1/a", 200, headers)[0].status == 200


def test_blocked_subscription_and_pending_approval_are_403(stack: Stack, world: dict) -> None:
    approval_plan = stack.create_plan("e2e-approval", approval_required=True)
    api = stack.create_api("approval-api", "/approval/v1", [approval_plan.id, world["plan"].id])
    app = stack.create_application("pending-app")
    subscription = stack.subscribe(app.id, api.id, approval_plan.id)
    assert subscription.state == store_pb2.SUBSCRIPTION_STATE_PENDING_APPROVAL
    headers = {"x-api-key": stack.issue_key(app.id).key}
    response, _ = stack.wait_for_status("/approval/v1/x", 403, headers)
    assert_problem(response, 403, "subscription_pending_approval")

    other = stack.create_application("sub-blocked-app")
    active = stack.subscribe(other.id, api.id, world["plan"].id)
    other_headers = {"x-api-key": stack.issue_key(other.id).key}
    stack.wait_for_status("/approval/v1/x", 200, other_headers)
    stack.call(
        stack.store.BlockSubscription, store_pb2.BlockSubscriptionRequest(id=active.id, reason="unpaid")
    )
    response, _ = stack.wait_for_status("/approval/v1/x", 403, other_headers)
    assert_problem(response, 403, "subscription_blocked")


def test_rotation_grace_period(stack: Stack, world: dict) -> None:
    app = stack.create_application("rotate-app")
    stack.subscribe(app.id, world["api"].id, world["plan"].id)
    old = stack.issue_key(app.id)
    stack.wait_for_status("/weather/v1/a", 200, {"x-api-key": old.key})
    rotated = stack.call(
        stack.store.RotateApiKey,
        store_pb2.RotateApiKeyRequest(key_id=old.api_key.key_id, grace_period=Duration(seconds=2)),
    )
    grace_ends = time.monotonic() + 2
    new_headers, old_headers = {"x-api-key": rotated.key}, {"x-api-key": old.key}
    assert stack.wait_for_status("/weather/v1/a", 200, new_headers)[0].status == 200
    assert stack.get("/weather/v1/a", old_headers).status == 200
    assert time.monotonic() < grace_ends, "the grace period ended before both keys were checked"
    time.sleep(max(0.0, grace_ends - time.monotonic()) + 0.1)
    assert_problem(stack.get("/weather/v1/a", old_headers), 401, "key_expired")
    assert stack.get("/weather/v1/a", new_headers).status == 200


def test_publish_and_unpublish_reach_envoy_within_one_second(stack: Stack, world: dict) -> None:
    api = stack.create_api("late-api", "/late/v1", [world["plan"].id], publish=False)
    assert stack.get("/late/v1/x").status == 404
    stack.call(stack.catalog.PublishApi, catalog_pb2.PublishApiRequest(id=api.id))
    # Reachable = routed to ext_authz, which answers 401 for a request without a key.
    response, elapsed = stack.wait_for_status("/late/v1/x", 401)
    assert response.status == 401 and elapsed < 1.0
    stack.subscribe(world["app"].id, api.id, world["plan"].id)
    assert stack.wait_for_status("/late/v1/x", 200, {"x-api-key": world["key"].key})[0].status == 200

    stack.call(stack.catalog.UnpublishApi, catalog_pb2.UnpublishApiRequest(id=api.id))
    response, elapsed = stack.wait_for_status("/late/v1/x", 404, {"x-api-key": world["key"].key})
    assert response.status == 404 and elapsed < 1.0


def test_admin_rpcs_require_the_token(stack: Stack) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        stack.catalog.ListPlans(catalog_pb2.ListPlansRequest(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as wrong:
        stack.catalog.ListPlans(catalog_pb2.ListPlansRequest(), metadata=(("authorization", "Bearer nope"),))
    assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert stack.call(stack.catalog.ListPlans, catalog_pb2.ListPlansRequest()).plans is not None


def test_nacked_config_leaves_previous_routes_serving(stack: Stack, world: dict) -> None:
    headers = {"x-api-key": world["key"].key}
    assert stack.wait_for_status("/weather/v1/a", 200, headers)[0].status == 200
    xds = stack.process.find(Xds)
    assert xds is not None
    ads = xds.ads
    nacks_before = ads.nacks[ROUTE_TYPE]

    async def push_broken() -> None:
        # What the catalog would build, with one route Envoy must reject (a regex that does not compile).
        resources = build_resources(await stack.process.catalog.published_apis(), xds.options)
        table = resources[ROUTE_TYPE][ROUTE_CONFIG_NAME]
        table.virtual_hosts[0].routes[0].route.regex_rewrite.pattern.regex = "^(["
        xds.cache.set_snapshot(resources)

    stack.run(push_broken())
    deadline = time.monotonic() + 5
    while ads.nacks[ROUTE_TYPE] == nacks_before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ads.nacks[ROUTE_TYPE] == nacks_before + 1
    assert stack.get("/weather/v1/a", headers).status == 200
    sent = ads.responses_sent[ROUTE_TYPE]
    time.sleep(0.5)
    assert ads.responses_sent[ROUTE_TYPE] == sent, "the rejected config was sent again"

    # The next catalog change produces a valid config again, and Envoy takes it.
    api = stack.create_api("after-nack", "/after-nack/v1", [world["plan"].id])
    assert stack.wait_for_status("/after-nack/v1/x", 401)[0].status == 401
    stack.call(stack.catalog.UnpublishApi, catalog_pb2.UnpublishApiRequest(id=api.id))

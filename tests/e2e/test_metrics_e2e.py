"""Metrics through a real Envoy: a scripted set of requests (allowed, refused for each reason, throttled,
a NACKed config, admin calls, an invoice run) moves each counter by exactly what was sent; and the
shipped dashboard and alert rules reference only metric names the process exposes."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.e2e.harness import Stack, free_port, start_stack, stop_stack
from tests.metrics_support import ROOT, RULES, Series, dashboard_exprs, families, parse, rule_exprs, value
from tollway.billing.v1 import billing_pb2, billing_pb2_grpc
from tollway.catalog.v1 import catalog_pb2
from tollway.store.v1 import store_pb2
from tollway.vocabulary import ThrottleMode
from xds.process import Xds
from xds.resources import ROUTE_CONFIG_NAME, ROUTE_TYPE, build_resources

pytestmark = pytest.mark.e2e

PROMTOOL = ROOT / "build" / "prometheus" / "usr" / "bin" / "promtool"
# Well-formed (tw_<12>_<32>), but no such key id exists.
UNKNOWN_KEY = "tw_aaaaaaaaaaaa_" + "a" * 32
CHECK = "tollway_keymgr_check_decisions_total"
RLS = "tollway_throttle_rls_requests_total"
ADMIN = "tollway_admin_rpcs_total"


@pytest.fixture(scope="module", params=["ratelimit", "authz"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    started = start_stack(
        Path(tmp_path_factory.mktemp("metrics-e2e")),
        metrics_addr=f"127.0.0.1:{free_port()}",
        throttle_mode=request.param,
    )
    try:
        yield started
    finally:
        stop_stack(started)


def scrape_text(stack: Stack) -> str:
    with urllib.request.urlopen(f"http://{stack.settings.metrics_addr}/metrics", timeout=5) as response:
        assert response.headers["content-type"].startswith("text/plain")
        return str(response.read().decode())


def scrape(stack: Stack) -> Series:
    return parse(scrape_text(stack))


def wait_until(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


def delta(after: Series, before: Series, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.fixture(scope="module")
def world(stack: Stack) -> dict[str, Any]:
    """Keys in every state the scripted requests need, each already in effect at the gateway."""
    free = stack.create_plan("metrics-free")
    # One request a day (not a minute): used up by this fixture, it stays used up for the tests after
    # it, whatever second of the minute they start at.
    tight = stack.create_plan("metrics-tight", limits=catalog_pb2.PlanLimits(requests_per_day=1))
    api = stack.create_api("metrics", "/metrics/v1", [free.id, tight.id])
    app = stack.create_application("metrics-app")
    stack.subscribe(app.id, api.id, free.id)
    good = stack.issue_key(app.id).key
    revoked = stack.issue_key(app.id)
    stack.call(stack.store.RevokeApiKey, store_pb2.RevokeApiKeyRequest(key_id=revoked.api_key.key_id))
    blocked_app = stack.create_application("metrics-blocked")
    blocked_sub = stack.subscribe(blocked_app.id, api.id, free.id)
    blocked = stack.issue_key(blocked_app.id).key
    stack.call(
        stack.store.BlockSubscription, store_pb2.BlockSubscriptionRequest(id=blocked_sub.id, reason="x")
    )
    stranger = stack.issue_key(stack.create_application("metrics-stranger").id).key
    tight_app = stack.create_application("metrics-tight-app")
    stack.subscribe(tight_app.id, api.id, tight.id)
    limited = stack.issue_key(tight_app.id).key
    path = "/metrics/v1/x"
    for key, status in ((good, 200), (revoked.key, 401), (blocked, 403), (stranger, 403), (limited, 200)):
        assert stack.wait_for_status(path, status, {"x-api-key": key}, timeout=10)[0].status == status
    # The tight plan's one request a day is used up from here on.
    assert stack.wait_for_status(path, 429, {"x-api-key": limited})[0].status == 429
    return {
        "free": free.id,
        "tight": tight.id,
        "good": good,
        "revoked": revoked.key,
        "blocked": blocked,
        "stranger": stranger,
        "limited": limited,
    }


def test_each_counter_moves_by_exactly_what_was_sent(stack: Stack, world: dict[str, Any]) -> None:
    path = "/metrics/v1/x"
    script: list[tuple[str | None, int, int]] = [  # key, expected status, times
        (world["good"], 200, 5),
        (None, 401, 2),
        ("not-a-key", 401, 1),
        (UNKNOWN_KEY, 401, 2),
        (world["revoked"], 401, 2),
        (world["blocked"], 403, 2),
        (world["stranger"], 403, 1),
        (world["limited"], 429, 3),
    ]
    before = scrape(stack)
    for key, status, times in script:
        for _ in range(times):
            response = stack.get(path, {"x-api-key": key} if key else {})
            assert response.status == status, (key, response.body)
    after = wait_until(
        lambda: (s := scrape(stack)) and delta(s, before, "tollway_keymgr_check_seconds_count") >= 18 and s
    )
    assert after
    fused = stack.settings.throttle.mode == ThrottleMode.AUTHZ
    expected_reasons = {
        # Two calls: the throttled requests pass Check, then ShouldRateLimit refuses them. Fused: Check
        # applies the limits itself and says why it refused.
        **({"allowed": 5, "rate_limited": 3} if fused else {"allowed": 5 + 3}),
        "key_missing": 2,
        "key_malformed": 1,
        "key_invalid": 2,
        "key_revoked": 2,
        "subscription_blocked": 2,
        "not_subscribed": 1,
    }
    reasons = {
        dict(labels)["reason"]
        for name, labels in after
        if name == CHECK and value(after, CHECK, **dict(labels)) != value(before, CHECK, **dict(labels))
    }
    assert reasons == set(expected_reasons)
    for reason, count in expected_reasons.items():
        assert delta(after, before, CHECK, reason=reason) == count, reason
    assert delta(after, before, "tollway_keymgr_check_seconds_count") == sum(expected_reasons.values())
    # ShouldRateLimit: one call per request that passed Check (none in the fused mode).
    assert delta(after, before, RLS, outcome="ok", window="none") == (0 if fused else 5)
    assert delta(after, before, RLS, outcome="over_limit", window="day") == (0 if fused else 3)
    assert delta(after, before, "tollway_throttle_rls_seconds_count") == (0 if fused else 8)
    # Both modes: the throttle's decisions per plan.
    assert (
        delta(after, before, "tollway_throttle_decisions_total", plan=world["tight"], result="over_limit")
        == 3
    )
    assert delta(after, before, "tollway_throttle_decisions_total", plan=world["free"], result="ok") == 5
    assert value(after, "tollway_xds_connected_envoys") == 1
    assert value(after, "tollway_xds_streams", node="e2e") >= 1


def test_admin_rpcs_are_counted_by_method_and_code(stack: Stack) -> None:
    list_plans = "/tollway.catalog.v1.CatalogService/ListPlans"
    get_app = "/tollway.store.v1.StoreService/GetApplication"
    before = scrape(stack)
    for _ in range(2):
        stack.call(stack.catalog.ListPlans, catalog_pb2.ListPlansRequest())
    with pytest.raises(grpc.RpcError) as refused:
        stack.catalog.ListPlans(catalog_pb2.ListPlansRequest(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as missing:
        stack.call(stack.store.GetApplication, store_pb2.GetApplicationRequest(id="no-such-app"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    # A made-up method is not a label of its own.
    bogus = grpc.insecure_channel(stack.settings.admin_addr)
    with pytest.raises(grpc.RpcError):
        bogus.unary_unary("/made.up.Service/Anything")(b"", metadata=stack.auth, timeout=5)
    bogus.close()
    after = scrape(stack)
    assert delta(after, before, ADMIN, method=list_plans, code="OK") == 2
    assert delta(after, before, ADMIN, method=list_plans, code="UNAUTHENTICATED") == 1
    assert delta(after, before, ADMIN, method=get_app, code="NOT_FOUND") == 1
    assert delta(after, before, ADMIN, method="other", code="UNIMPLEMENTED") == 1
    assert not any(name == ADMIN and "made.up" in dict(labels)["method"] for name, labels in after)


def test_revocation_lag_and_an_invoice_run_are_measured(stack: Stack, world: dict[str, Any]) -> None:
    before = scrape(stack)
    app = stack.create_application("metrics-lag")
    issued = stack.issue_key(app.id)
    stack.call(stack.store.RevokeApiKey, store_pb2.RevokeApiKeyRequest(key_id=issued.api_key.key_id))

    def lagged() -> Series | None:
        after = scrape(stack)
        moved = delta(after, before, "tollway_change_lag_seconds_count", listener="keymgr", topic="keys")
        return after if moved >= 2 else None  # the key's creation and its revocation

    after = wait_until(lagged)
    assert after is not None
    # Both changes were observed with a lag: the histogram's +Inf bucket and its sum moved with its count.
    # (How long the lag is is a latency figure, reported by `make bench`, not asserted here: the 1 s
    # promise for revocation is checked end to end by tests/e2e/test_gateway_e2e.py.)
    labels = {"listener": "keymgr", "topic": "keys"}
    moved = delta(after, before, "tollway_change_lag_seconds_count", **labels)
    assert delta(after, before, "tollway_change_lag_seconds_bucket", le="+Inf", **labels) == moved
    assert delta(after, before, "tollway_change_lag_seconds_sum", **labels) > 0
    billing = billing_pb2_grpc.BillingServiceStub(grpc.insecure_channel(stack.settings.admin_addr))
    run = billing_pb2.GenerateInvoicesRequest(billing_month="2026-01", request_id=f"run-{time.time_ns()}")
    stack.call(billing.GenerateInvoices, run)
    stack.call(billing.GenerateInvoices, run)  # the same request id: the first run's invoices
    with pytest.raises(grpc.RpcError) as refused:
        stack.call(billing.GenerateInvoices, billing_pb2.GenerateInvoicesRequest())  # no period, no month
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    after = scrape(stack)
    runs = "tollway_billing_invoice_runs_total"
    for result, count in (("ok", 1), ("replayed", 1), ("refused", 1), ("failed", 0)):
        assert delta(after, before, runs, result=result) == count, result
    assert delta(after, before, "tollway_billing_invoice_run_seconds_count") == 3


def test_a_nacked_config_is_counted_for_its_node_and_type(stack: Stack, world: dict[str, Any]) -> None:
    xds = stack.process.find(Xds)
    assert xds is not None
    before = scrape(stack)

    async def push_broken() -> None:
        resources = build_resources(await stack.process.catalog.published_apis(), xds.options)
        table = resources[ROUTE_TYPE][ROUTE_CONFIG_NAME]
        table.virtual_hosts[0].routes[0].route.regex_rewrite.pattern.regex = "^(["  # does not compile
        xds.cache.set_snapshot(resources)

    stack.run(push_broken())
    nacks = "tollway_xds_nacks_total"
    after = wait_until(
        lambda: (s := scrape(stack)) and delta(s, before, nacks, node="e2e", type_url=ROUTE_TYPE) >= 1 and s
    )
    assert after
    assert delta(after, before, nacks, node="e2e", type_url=ROUTE_TYPE) == 1
    assert delta(after, before, "tollway_xds_pushes_total", node="e2e", type_url=ROUTE_TYPE) == 1
    assert delta(after, before, "tollway_xds_acks_total", node="e2e", type_url=ROUTE_TYPE) == 0
    # The next catalog change gives Envoy a valid configuration again.
    plan = stack.create_plan("metrics-after-nack")
    stack.create_api("metrics-after-nack", "/metrics-after-nack/v1", [plan.id])
    assert stack.wait_for_status("/metrics-after-nack/v1/x", 401)[0].status == 401


# --- the dashboard and the rules against what the process exposes ----------------------------------

_NAME = re.compile(r"\b(tollway_[a-z0-9_]+)\b")


def test_dashboard_and_rules_reference_only_exposed_metrics(stack: Stack) -> None:
    exposed = families(scrape_text(stack))
    referenced = {name for expr in dashboard_exprs() + rule_exprs() for name in _NAME.findall(expr)}
    assert len(referenced) >= 15
    missing = sorted(referenced - set(exposed))
    assert not missing, f"referenced but not exposed: {missing}"
    # Quantiles are taken over histograms only.
    for expr in dashboard_exprs() + rule_exprs():
        for name in re.findall(r"histogram_quantile\([^,]+,[^)]*?\b(tollway_[a-z0-9_]+_bucket)\b", expr):
            assert exposed[name] == "histogram", name


@pytest.mark.skipif(
    not PROMTOOL.exists() and shutil.which("promtool") is None,
    reason="promtool not installed (make promtool)",
)
def test_promtool_accepts_the_rules_and_lints_the_scrape_clean(stack: Stack) -> None:
    promtool = str(PROMTOOL) if PROMTOOL.exists() else str(shutil.which("promtool"))
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Naming and type conventions of the exposition itself (counters end in _total, units, ...).
    result = subprocess.run(
        [promtool, "check", "metrics"], input=scrape_text(stack), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr

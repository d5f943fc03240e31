"""The admin CLI: parsing helpers, and the requests it sends to a real in-process gRPC server.

The server hosts a recording test double of CatalogService and StoreService defined in this file (the
real servicers are tested on their own); it checks which requests the CLI builds, that the bearer
token travels with them and how gRPC errors become exit codes.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import typer
from google.protobuf.message import Message
from typer.testing import CliRunner

from keymgr.cli import register as register_keymgr_commands
from tollway.catalog.cli import register as register_catalog_commands
from tollway.catalog.cli_options import parse_money, parse_tier
from tollway.catalog.v1 import catalog_pb2 as cat
from tollway.catalog.v1 import catalog_pb2_grpc as cat_grpc
from tollway.cli_support import parse_duration
from tollway.store.v1 import store_pb2 as st
from tollway.store.v1 import store_pb2_grpc as st_grpc

TOKEN = "test-admin-token-5f3a"

# --------------------------------------------------------------------------------------------------
# Parsing helpers
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("30d", timedelta(days=30)),
        ("2w", timedelta(weeks=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        (" 1H ", timedelta(hours=1)),
        ("0", timedelta(0)),
        ("0s", timedelta(0)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "30", "x", "1.5h", "-1h", "1h x", "h", "30 d", "1y"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "up_to", "price"),
    [
        ("10000:0.001", 10000, "0.001"),
        ("0:0.0005", 0, "0.0005"),
        ("inf:0.0005", 0, "0.0005"),
        ("*:1", 0, "1"),
        (" 500 : 0.25 ", 500, "0.25"),
    ],
)
def test_parse_tier(text: str, up_to: int, price: str) -> None:
    assert parse_tier(text) == cat.PriceTier(up_to=up_to, unit_price=price)


def test_parse_tier_with_a_flat_fee() -> None:
    assert parse_tier("10000:0.001:25.00") == cat.PriceTier(up_to=10000, unit_price="0.001", flat_fee="25.00")


@pytest.mark.parametrize(
    "text", ["10000", "x:0.1", "-1:0.1", "10:abc", "10:-0.1", "10:1e3", "10:", ":0.1", "10:1:-2", "1:2:3:4"]
)
def test_parse_tier_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        parse_tier(text)


def test_parse_money_keeps_the_text() -> None:
    assert parse_money("49.00") == "49.00"
    assert parse_money("0.0004") == "0.0004"
    for bad in ("", "abc", "-1", "NaN", "Infinity", "1e3"):
        with pytest.raises(ValueError):
            parse_money(bad)


# --------------------------------------------------------------------------------------------------
# Test double: a recording CatalogService + StoreService on a real sync grpc.server
# --------------------------------------------------------------------------------------------------


@dataclass
class Call:
    method: str
    request: Any
    metadata: dict[str, str]


@dataclass
class FakeAdmin:
    """Records every request; answers from `replies` (a message or request -> message), else an empty
    response; aborts with `errors[method]`; refuses a wrong or missing bearer token like the real server."""

    calls: list[Call] = field(default_factory=list)
    replies: dict[str, Message | Callable[[Any], Message]] = field(default_factory=dict)
    errors: dict[str, tuple[grpc.StatusCode, str]] = field(default_factory=dict)

    def handle(self, method: str, response_type: type[Message], request: Any, context: Any) -> Message:
        metadata = {key: value for key, value in context.invocation_metadata()}
        self.calls.append(Call(method, request, metadata))
        if metadata.get("authorization") != f"Bearer {TOKEN}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid admin bearer token")
        if method in self.errors:
            context.abort(*self.errors[method])
        reply = self.replies.get(method)
        if callable(reply):
            return reply(request)
        return reply if reply is not None else response_type()

    def methods(self) -> list[str]:
        return [call.method for call in self.calls]

    def only(self, method: str) -> Any:
        matching = [call.request for call in self.calls if call.method == method]
        assert len(matching) == 1, self.methods()
        return matching[0]


def _servicer(base: type, pb2: Any, service: str, fake: FakeAdmin) -> Any:
    """A subclass of the generated servicer whose every RPC goes to `fake`."""

    def make(method: str, response_type: type[Message]) -> Callable[..., Message]:
        return lambda _self, request, context: fake.handle(method, response_type, request, context)

    methods = {
        m.name: make(m.name, getattr(pb2, m.output_type.name))
        for m in pb2.DESCRIPTOR.services_by_name[service].methods
    }
    return type(f"Fake{service}", (base,), methods)()


@pytest.fixture
def admin_server() -> Iterator[tuple[FakeAdmin, str]]:
    fake = FakeAdmin()
    fake.replies["GetPlan"] = lambda req: cat.GetPlanResponse(plan=cat.Plan(id=f"plan_{req.id}", name=req.id))
    fake.replies["GetApi"] = lambda req: cat.GetApiResponse(api=cat.Api(id=f"api_{req.id}", name=req.id))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    cat_grpc.add_CatalogServiceServicer_to_server(
        _servicer(cat_grpc.CatalogServiceServicer, cat, "CatalogService", fake), server
    )
    st_grpc.add_StoreServiceServicer_to_server(
        _servicer(st_grpc.StoreServiceServicer, st, "StoreService", fake), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield fake, f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    register_catalog_commands(app)
    register_keymgr_commands(app)
    return app


@pytest.fixture
def run(cli: typer.Typer, admin_server: tuple[FakeAdmin, str], tmp_path: Path) -> Callable[..., Any]:
    """Invokes the CLI against the test server, with address and token from the environment."""
    _, addr = admin_server

    def invoke(*args: str, env: dict[str, str | None] | None = None) -> Any:
        base: dict[str, str | None] = {
            "TOLLWAY_ADMIN_ADDR": addr,
            "TOLLWAY_ADMIN_TOKEN": TOKEN,
            "TOLLWAY_DATA_DIR": str(tmp_path / "no-data-dir"),
        }
        return CliRunner().invoke(cli, list(args), env={**base, **(env or {})})

    return invoke


# --------------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------------


def test_every_group_and_command_is_registered(cli: typer.Typer) -> None:
    expected = {
        "plan": {"create", "list", "get", "update", "delete", "versions"},
        "api": {"create", "list", "get", "update", "publish", "unpublish", "delete"},
        "app": {"create", "list", "get", "update", "delete"},
        "sub": {"create", "list", "get", "block", "unblock", "cancel"},
        "key": {"create", "list", "get", "rotate", "revoke"},
        "block": {"add", "list", "delete"},
    }
    groups = {info.name: info.typer_instance for info in cli.registered_groups}
    assert set(groups) == set(expected)
    for name, commands in expected.items():
        assert {c.name for c in groups[name].registered_commands} == commands, name


def test_plan_create_sends_limits_pricing_and_the_token(run: Callable[..., Any], admin_server: Any) -> None:
    fake, _ = admin_server
    fake.replies["CreatePlan"] = lambda req: cat.CreatePlanResponse(
        plan=cat.Plan(id="plan_1", name=req.plan.name)
    )
    result = run(
        "plan", "create", "gold", "--per-minute", "10", "--monthly-quota", "100000", "--quota-policy", "hard",
        "--currency", "eur", "--fee", "49.00", "--included", "100000", "--unit-price", "0.0004",
        "--tier", "10000:0.001", "--tier", "0:0.0005", "--approval-required",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    request = fake.only("CreatePlan")
    assert fake.calls[0].metadata["authorization"] == f"Bearer {TOKEN}"
    plan = request.plan
    assert plan.name == "gold"
    assert plan.approval_required
    assert plan.limits == cat.PlanLimits(
        requests_per_minute=10, monthly_quota=100000, quota_policy=cat.QUOTA_POLICY_HARD
    )
    assert plan.pricing.currency == "EUR"
    assert plan.pricing.recurring_fee == "49.00"
    assert plan.pricing.included_requests == 100000
    assert plan.pricing.unit_price == "0.0004"
    assert list(plan.pricing.tiers) == [
        cat.PriceTier(up_to=10000, unit_price="0.001"),
        cat.PriceTier(up_to=0, unit_price="0.0005"),
    ]
    # JSON with proto field names on stdout, nothing secret anywhere.
    assert json.loads(result.stdout)["plan"]["id"] == "plan_1"
    assert TOKEN not in result.output


def test_plan_create_sends_the_price_models(run: Callable[..., Any], admin_server: Any) -> None:
    fake, _ = admin_server
    fake.replies["CreatePlan"] = lambda req: cat.CreatePlanResponse(plan=cat.Plan(id="plan_2"))
    result = run(
        "plan", "create", "volume", "--currency", "USD", "--tier", "10000:0.0010:10", "--tier", "0:0.0004:10",
        "--tier-mode", "volume", "--trial-days", "14",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    pricing = fake.only("CreatePlan").plan.pricing
    assert pricing.tier_mode == cat.TIER_MODE_VOLUME and pricing.trial_days == 14
    assert [(t.up_to, t.unit_price, t.flat_fee) for t in pricing.tiers] == [
        (10000, "0.0010", "10"),
        (0, "0.0004", "10"),
    ]
    result = run(
        "plan", "create", "packs", "--currency", "EUR", "--package-size", "100", "--package-price", "5"
    )
    assert result.exit_code == 0, result.output
    pricing = fake.calls[-1].request.plan.pricing
    assert (pricing.package_size, pricing.package_price) == (100, "5")


def test_plan_update_merges_into_the_current_plan(run: Callable[..., Any], admin_server: Any) -> None:
    fake, _ = admin_server
    current = cat.Plan(
        id="plan_g",
        name="gold",
        limits=cat.PlanLimits(
            requests_per_minute=10, monthly_quota=100000, quota_policy=cat.QUOTA_POLICY_HARD
        ),
        pricing=cat.PlanPricing(currency="EUR", recurring_fee="49.00", tiers=[cat.PriceTier(unit_price="1")]),
    )
    fake.replies["GetPlan"] = cat.GetPlanResponse(plan=current)
    result = run("plan", "update", "gold", "--per-minute", "20", "--fee", "59.00", "--no-approval-required")
    assert result.exit_code == 0, result.output
    request = fake.only("UpdatePlan")
    assert request.plan.id == "plan_g"
    assert list(request.update_mask.paths) == ["limits", "pricing", "approval_required"]
    assert request.plan.limits.requests_per_minute == 20
    assert request.plan.limits.monthly_quota == 100000  # untouched limits survive the top-level mask
    assert request.plan.pricing.recurring_fee == "59.00"
    assert request.plan.pricing.currency == "EUR"
    assert len(request.plan.pricing.tiers) == 1


def test_plan_update_says_when_a_new_version_takes_effect(run: Callable[..., Any], admin_server: Any) -> None:
    fake, _ = admin_server
    fake.replies["GetPlan"] = cat.GetPlanResponse(plan=cat.Plan(id="plan_g", name="gold"))
    assert run("plan", "update", "gold", "--fee", "59.00").exit_code == 0
    assert (
        fake.calls[-1].request.effect == cat.VERSION_EFFECT_UNSPECIFIED
    )  # the server's default: next period
    assert run("plan", "update", "gold", "--fee", "59.00", "--now").exit_code == 0
    assert fake.calls[-1].request.effect == cat.VERSION_EFFECT_INSTANT
    assert not fake.calls[-1].request.HasField("effective_time")
    result = run("plan", "update", "gold", "--fee", "59.00", "--at", "2026-12-15T00:00Z")
    assert result.exit_code == 0, result.output
    request = fake.calls[-1].request
    assert (request.effect, request.effective_time.seconds) == (cat.VERSION_EFFECT_INSTANT, 1797292800)
    assert run("plan", "update", "gold", "--fee", "1", "--now", "--at", "2026-12-15").exit_code == 2
    fake.replies["ListPlanVersions"] = cat.ListPlanVersionsResponse(versions=[cat.PlanVersion(version=1)])
    result = run("plan", "versions", "gold")
    assert result.exit_code == 0, result.output
    assert fake.calls[-1].request == cat.ListPlanVersionsRequest(id="gold")


def test_plan_update_without_changes_is_a_usage_error(run: Callable[..., Any], admin_server: Any) -> None:
    fake, _ = admin_server
    result = run("plan", "update", "gold")
    assert result.exit_code == 2
    assert "UpdatePlan" not in fake.methods()


def test_plan_delete_resolves_a_name(run: Callable[..., Any], admin_server: Any) -> None:
    fake, _ = admin_server
    result = run("plan", "delete", "gold")
    assert result.exit_code == 0, result.output
    assert fake.methods() == ["GetPlan", "DeletePlan"]
    assert fake.only("DeletePlan").id == "plan_gold"
    assert json.loads(result.stdout) == {}


def test_api_create_and_publish(run: Callable[..., Any], admin_server: Any) -> None:
    fake, _ = admin_server
    fake.replies["CreateApi"] = lambda req: cat.CreateApiResponse(api=cat.Api(id="api_w", name=req.api.name))
    fake.replies["PublishApi"] = lambda req: cat.PublishApiResponse(api=cat.Api(id=req.id, published=True))
    result = run(
        "api", "create", "weather", "--version", "v1", "--context", "/weather/v1",
        "--upstream", "http://127.0.0.1:9000", "--plan", "gold", "--publish",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert fake.methods() == ["GetPlan", "CreateApi", "PublishApi"]
    api = fake.only("CreateApi").api
    assert (api.name, api.version, api.context_path) == ("weather", "v1", "/weather/v1")
    assert list(api.upstream_urls) == ["http://127.0.0.1:9000"]
    assert list(api.plan_ids) == ["plan_gold"]
    assert fake.only("PublishApi").id == "api_w"
    printed = json.loads(result.stdout)["api"]
    assert (printed["id"], printed["published"]) == ("api_w", True)


def test_api_create_reports_a_failed_publish(run: Callable[..., Any], admin_server: Any) -> None:
    fake, _ = admin_server
    fake.replies["CreateApi"] = cat.CreateApiResponse(api=cat.Api(id="api_w"))
    fake.errors["PublishApi"] = (grpc.StatusCode.FAILED_PRECONDITION, "no plans offered")
    result = run("api", "create", "weather", "--context", "/w", "--upstream", "http://u", "--publish")
    assert result.exit_code == 1
    assert "error: FAILED_PRECONDITION: no plans offered" in result.stderr
    assert "api_w was created but not published" in result.stderr


def test_api_update_and_publish_lifecycle(run: Callable[..., Any], admin_server: Any) -> None:
    fake, _ = admin_server
    result = run(
        "api", "update", "weather", "--upstream", "http://a", "--upstream", "http://b", "--plan", "gold"
    )
    assert result.exit_code == 0, result.output
    request = fake.only("UpdateApi")
    assert request.api.id == "api_weather"
    assert list(request.update_mask.paths) == ["upstream_urls", "plan_ids"]
    assert list(request.api.upstream_urls) == ["http://a", "http://b"]
    assert list(request.api.plan_ids) == ["plan_gold"]
    for command, rpc in (("publish", "PublishApi"), ("unpublish", "UnpublishApi"), ("delete", "DeleteApi")):
        assert run("api", command, "weather").exit_code == 0
        assert fake.only(rpc).id == "api_weather"
    assert run("api", "list", "--published-only").exit_code == 0
    assert fake.only("ListApis").published_only


def test_app_commands(run: Callable[..., Any], admin_server: Any) -> None:
    fake, _ = admin_server
    assert run("app", "create", "shop", "--owner", "dev@example.com").exit_code == 0
    assert fake.only("CreateApplication").application == st.Application(name="shop", owner="dev@example.com")
    assert run("app", "update", "app_1", "--description", "web shop").exit_code == 0
    request = fake.only("UpdateApplication")
    assert request.application == st.Application(id="app_1", description="web shop")
    assert list(request.update_mask.paths) == ["description"]
    assert run("app", "list", "--owner", "dev@example.com", "--include-deleted").exit_code == 0
    assert fake.only("ListApplications") == st.ListApplicationsRequest(
        owner="dev@example.com", include_deleted=True
    )
    assert run("app", "delete", "app_1").exit_code == 0
    assert fake.only("DeleteApplication").id == "app_1"


def test_sub_commands(run: Callable[..., Any], admin_server: Any) -> None:
    fake, _ = admin_server
    fake.replies["ListSubscriptions"] = st.ListSubscriptionsResponse()
    assert (
        run("sub", "create", "app_1", "--api", "weather", "--plan", "gold", "--anchor-day", "15").exit_code
        == 0
    )
    assert fake.only("CreateSubscription") == st.CreateSubscriptionRequest(
        application_id="app_1", api_id="weather", plan_id="gold", billing_anchor_day=15
    )
    result = run("sub", "list", "--application", "app_1", "--state", "pending_approval")
    assert result.exit_code == 0, result.output
    assert fake.only("ListSubscriptions").state == st.SUBSCRIPTION_STATE_PENDING_APPROVAL
    # Empty lists still print their field.
    assert json.loads(result.stdout) == {"subscriptions": []}
    assert run("sub", "block", "sub_1", "--reason", "abuse").exit_code == 0
    assert fake.only("BlockSubscription") == st.BlockSubscriptionRequest(id="sub_1", reason="abuse")
    assert run("sub", "unblock", "sub_1").exit_code == 0
    assert run("sub", "cancel", "sub_1").exit_code == 0
    assert fake.methods()[-2:] == ["UnblockSubscription", "CancelSubscription"]
    assert run("sub", "create", "app_1", "--api", "w", "--plan", "g", "--anchor-day", "29").exit_code == 2


def test_key_create_shows_the_key_once(run: Callable[..., Any], admin_server: Any) -> None:
    fake, _ = admin_server
    fake.replies["CreateApiKey"] = st.CreateApiKeyResponse(
        api_key=st.ApiKey(key_id="k5x2m9q3ab7d"), key="tw_k5x2m9q3ab7d_secret"
    )
    result = run("key", "create", "app_1", "--name", "ci", "--ttl", "30d")
    assert result.exit_code == 0, result.output
    request = fake.only("CreateApiKey")
    assert (request.application_id, request.name) == ("app_1", "ci")
    assert request.ttl.ToTimedelta() == timedelta(days=30)
    assert json.loads(result.stdout)["key"] == "tw_k5x2m9q3ab7d_secret"
    assert "shown only once" in result.stderr
    assert "shown only once" not in result.stdout  # stdout stays pure JSON


def test_key_create_without_ttl_leaves_it_unset(run: Callable[..., Any], admin_server: Any) -> None:
    fake, _ = admin_server
    assert run("key", "create", "app_1").exit_code == 0
    assert not fake.only("CreateApiKey").HasField("ttl")
    assert run("key", "create", "app_1", "--ttl", "0").exit_code == 2


def test_key_rotate_grace_and_ttl(run: Callable[..., Any], admin_server: Any) -> None:
    fake, _ = admin_server
    result = run("key", "rotate", "k1", "--grace", "1h", "--ttl", "90d")
    assert result.exit_code == 0, result.output
    request = fake.only("RotateApiKey")
    assert request.key_id == "k1"
    assert request.grace_period.ToTimedelta() == timedelta(hours=1)
    assert request.ttl.ToTimedelta() == timedelta(days=90)
    assert "shown only once" in result.stderr


def test_key_rotate_grace_zero_is_sent_and_unset_is_not(run: Callable[..., Any], admin_server: Any) -> None:
    fake, _ = admin_server
    assert run("key", "rotate", "k1", "--grace", "0").exit_code == 0
    assert run("key", "rotate", "k2").exit_code == 0
    first, second = (call.request for call in fake.calls)
    assert first.HasField("grace_period")
    assert first.grace_period.ToTimedelta() == timedelta(0)
    assert not second.HasField("grace_period")


def test_key_list_get_revoke(run: Callable[..., Any], admin_server: Any) -> None:
    fake, _ = admin_server
    assert run("key", "list", "app_1").exit_code == 0
    assert run("key", "get", "k1").exit_code == 0
    assert run("key", "revoke", "k1").exit_code == 0
    assert fake.methods() == ["ListApiKeys", "GetApiKey", "RevokeApiKey"]
    assert fake.only("ListApiKeys").application_id == "app_1"
    assert fake.only("RevokeApiKey").key_id == "k1"


@pytest.mark.parametrize(
    ("option", "value", "target"),
    [
        ("--api", "api_1", st.BLOCK_TARGET_API),
        ("--application", "app_x", st.BLOCK_TARGET_APPLICATION),
        ("--key", "k1", st.BLOCK_TARGET_API_KEY),
        ("--cidr", "10.0.0.0/8", st.BLOCK_TARGET_CLIENT_CIDR),
        ("--cidr", "2001:db8::1", st.BLOCK_TARGET_CLIENT_CIDR),
    ],
)
def test_block_add(run: Callable[..., Any], admin_server: Any, option: str, value: str, target: int) -> None:
    fake, _ = admin_server
    result = run("block", "add", option, value, "--reason", "abuse")
    assert result.exit_code == 0, result.output
    assert fake.only("CreateBlockRule").block_rule == st.BlockRule(target=target, value=value, reason="abuse")


@pytest.mark.parametrize(
    "args",
    [
        ("block", "add"),
        ("block", "add", "--api", "a", "--key", "k"),
        ("block", "add", "--cidr", "not-an-ip"),
    ],
)
def test_block_add_usage_errors_send_nothing(
    run: Callable[..., Any], admin_server: Any, args: tuple[str, ...]
) -> None:
    fake, _ = admin_server
    assert run(*args).exit_code == 2
    assert fake.calls == []


def test_block_list_and_delete(run: Callable[..., Any], admin_server: Any) -> None:
    fake, _ = admin_server
    assert run("block", "list").exit_code == 0
    assert run("block", "delete", "blk_1").exit_code == 0
    assert fake.only("DeleteBlockRule").id == "blk_1"


# --------------------------------------------------------------------------------------------------
# Connection, token, errors
# --------------------------------------------------------------------------------------------------


def test_grpc_error_becomes_exit_code_1(run: Callable[..., Any], admin_server: Any) -> None:
    fake, _ = admin_server
    fake.errors["GetPlan"] = (grpc.StatusCode.NOT_FOUND, "plan 'nope' not found")
    result = run("plan", "get", "nope")
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: NOT_FOUND: plan 'nope' not found"
    assert result.stdout == ""


def test_wrong_token_is_unauthenticated(run: Callable[..., Any]) -> None:
    result = run("plan", "list", "--token", "wrong")
    assert result.exit_code == 1
    assert "error: UNAUTHENTICATED" in result.stderr
    assert "(admin token from --token)" in result.stderr
    assert "wrong" not in result.stderr


def test_a_refused_token_names_its_source(run: Callable[..., Any], admin_server: Any, tmp_path: Path) -> None:
    assert (
        "(admin token from TOLLWAY_ADMIN_TOKEN)"
        in run("plan", "list", env={"TOLLWAY_ADMIN_TOKEN": "stale"}).stderr
    )
    (tmp_path / "admin-token").write_text("stale\n")
    from_file = run("plan", "list", env={"TOLLWAY_ADMIN_TOKEN": None, "TOLLWAY_DATA_DIR": str(tmp_path)})
    assert from_file.exit_code == 1
    assert f"(admin token from {tmp_path / 'admin-token'} (TOLLWAY_DATA_DIR))" in from_file.stderr


def test_options_override_the_environment(
    cli: typer.Typer, admin_server: tuple[FakeAdmin, str], tmp_path: Path
) -> None:
    fake, addr = admin_server
    env: dict[str, str | None] = {
        "TOLLWAY_ADMIN_ADDR": "127.0.0.1:1",
        "TOLLWAY_ADMIN_TOKEN": "stale",
        "TOLLWAY_DATA_DIR": str(tmp_path),
    }
    result = CliRunner().invoke(cli, ["plan", "list", "--addr", addr, "--token", TOKEN], env=env)
    assert result.exit_code == 0, result.output
    assert fake.calls[0].metadata["authorization"] == f"Bearer {TOKEN}"


def test_token_falls_back_to_the_data_dir_file(
    run: Callable[..., Any], admin_server: Any, tmp_path: Path
) -> None:
    fake, _ = admin_server
    (tmp_path / "admin-token").write_text(TOKEN + "\n")
    result = run("plan", "list", env={"TOLLWAY_ADMIN_TOKEN": None, "TOLLWAY_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert fake.calls[0].metadata["authorization"] == f"Bearer {TOKEN}"


def test_missing_token_is_a_usage_error(run: Callable[..., Any], admin_server: Any) -> None:
    fake, _ = admin_server
    result = run("plan", "list", env={"TOLLWAY_ADMIN_TOKEN": None})
    assert result.exit_code == 2
    assert "no admin token" in result.stderr
    assert fake.calls == []


def test_help_never_shows_the_token(run: Callable[..., Any]) -> None:
    result = run("key", "create", "--help")
    assert result.exit_code == 0
    assert "TOLLWAY_ADMIN_TOKEN" in result.output
    assert TOKEN not in result.output


def test_unreachable_server_names_the_address(cli: typer.Typer) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = CliRunner().invoke(cli, ["plan", "list", "--addr", f"127.0.0.1:{port}", "--token", TOKEN])
    assert result.exit_code == 1
    assert f"error: cannot reach the admin server at 127.0.0.1:{port}" in result.stderr
    assert TOKEN not in result.output


def test_table_and_json_of_a_real_answer_carry_the_same_fields(
    run: Callable[..., Any], admin_server: Any
) -> None:
    from tollway.cli_output import data_fields, table_fields

    fake, _ = admin_server
    fake.replies["ListPlans"] = cat.ListPlansResponse(
        plans=[
            cat.Plan(id="plan_1", name="gold", limits=cat.PlanLimits(requests_per_minute=10)),
            cat.Plan(id="plan_2", name="free", approval_required=True),
        ]
    )
    as_json = run("plan", "list", "--output", "json")
    as_table = run("plan", "list", "--output", "table")
    assert as_json.exit_code == 0 and as_table.exit_code == 0, as_json.output + as_table.output
    data = json.loads(as_json.stdout)
    assert data["plans"][0]["limits"]["requests_per_minute"] == 10  # a count is a number
    assert table_fields(as_table.stdout) == data_fields(data)
    assert "REQUESTS_PER_MINUTE" in as_table.stdout.upper() and "plan_2" in as_table.stdout
    # Piped (no terminal) without --output: JSON.
    assert json.loads(run("plan", "list").stdout) == data

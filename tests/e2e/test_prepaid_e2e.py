"""Prepaid credit and spend caps through a real Envoy: a prepaid plan answers 402 credit_exhausted at
zero balance and admits again after a top-up, each within a second of the balance changing; concurrent
top-ups and burns and a usage replay leave the exact balance; spend caps refuse with 402
spend_cap_reached and raise their alerts once; bad input changes nothing."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.e2e.harness import Stack, start_stack, stop_stack
from tests.usage.usage_entries import entry, message
from tollway.billing.v1 import billing_pb2 as bpb
from tollway.billing.v1 import billing_pb2_grpc
from tollway.catalog.v1 import catalog_pb2
from tollway.envoy_contract import problem_type

pytestmark = pytest.mark.e2e
PROPAGATION_SECONDS = 1.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    started = start_stack(Path(tmp_path_factory.mktemp("prepaid")))
    try:
        yield started
    finally:
        stop_stack(started)


@pytest.fixture(scope="module")
def billing(stack: Stack) -> billing_pb2_grpc.BillingServiceStub:
    return billing_pb2_grpc.BillingServiceStub(grpc.insecure_channel(stack.settings.admin_addr))


def _plan(stack: Stack, name: str, prepaid: bool, unit_price: str = "1.00") -> catalog_pb2.Plan:
    pricing = catalog_pb2.PlanPricing(currency="USD", unit_price=unit_price)
    return stack.create_plan(name, pricing=pricing, prepaid=prepaid)


def _consumer(stack: Stack, plan: catalog_pb2.Plan, label: str) -> tuple[Any, Any, Any, dict[str, str], str]:
    api = stack.create_api(f"{label}-api", f"/{label}", [plan.id])
    app = stack.create_application(f"{label}-app")
    sub = stack.subscribe(app.id, api.id, plan.id)
    key = stack.issue_key(app.id).key
    return api, app, sub, {"x-api-key": key}, f"/{label}/anything"


def _balance(stack: Stack, billing: Any, app_id: str) -> Decimal:
    found = stack.call(
        billing.GetCreditBalance, bpb.GetCreditBalanceRequest(application_id=app_id, currency="USD")
    )
    return Decimal(found.balances[0].balance) if found.balances else Decimal(0)


def _ledger_sum(stack: Stack, billing: Any, app_id: str) -> Decimal:
    entries = stack.call(
        billing.ListCreditEntries, bpb.ListCreditEntriesRequest(application_id=app_id)
    ).entries
    return sum((Decimal(e.amount) for e in entries), Decimal(0))


def _top_up(stack: Stack, billing: Any, app_id: str, amount: str, request_id: str = "") -> Any:
    request = bpb.TopUpCreditRequest(
        application_id=app_id, currency="USD", amount=amount, request_id=request_id or uuid.uuid4().hex
    )
    return stack.call(billing.TopUpCredit, request)


def _settled(stack: Stack, billing: Any, app_id: str, expected: Decimal, timeout: float = 20.0) -> Decimal:
    """Polls the balance until it equals `expected` (burns land a round after usage is counted)."""
    deadline = time.monotonic() + timeout
    balance = _balance(stack, billing, app_id)
    while balance != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        balance = _balance(stack, billing, app_id)
    return balance


def _metering_round(stack: Stack) -> None:
    stack.run(stack.process.running["billing"].metering.round())  # type: ignore[attr-defined]


def test_prepaid_refuses_at_zero_and_admits_after_top_up(stack: Stack, billing: Any) -> None:
    plan = _plan(stack, "prepaid-gold", prepaid=True)
    _, app, _, headers, path = _consumer(stack, plan, "prepaid")

    # No credit ever: refused with a problem document.
    refused, _ = stack.wait_for_status(path, 402, headers, timeout=10)
    assert refused.status == 402
    assert refused.headers["content-type"].startswith("application/problem+json")
    body = json.loads(refused.body)
    assert body["type"] == problem_type("credit_exhausted") and body["title"] == "Credit exhausted"
    assert body["status"] == 402

    # A top-up admits within a second of being written.
    _top_up(stack, billing, app.id, "3.00")
    admitted, took = stack.wait_for_status(path, 200, headers, timeout=5)
    assert admitted.status == 200 and took < PROPAGATION_SECONDS, took

    # Each admitted request burns 1.00: after three the balance is zero (or below, for requests that
    # were in flight when it reached zero) and the gateway refuses within a second of that.
    for _ in range(3):
        assert stack.get(path, headers).status == 200
    deadline = time.monotonic() + 20
    while _balance(stack, billing, app.id) > 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _balance(stack, billing, app.id) <= 0
    refused, took = stack.wait_for_status(path, 402, headers, timeout=5)
    assert refused.status == 402 and took < PROPAGATION_SECONDS, took

    # Top up again: admitted within a second.
    _top_up(stack, billing, app.id, "10.00")
    admitted, took = stack.wait_for_status(path, 200, headers, timeout=5)
    assert admitted.status == 200 and took < PROPAGATION_SECONDS, took


def test_concurrent_burns_top_ups_and_a_usage_replay_leave_the_exact_balance(
    stack: Stack, billing: Any
) -> None:
    plan = _plan(stack, "prepaid-cents", prepaid=True, unit_price="0.01")
    api, app, sub, headers, path = _consumer(stack, plan, "concurrent")
    _top_up(stack, billing, app.id, "5.00")
    stack.wait_for_status(path, 200, headers, timeout=5)

    admitted = 0
    lock = threading.Lock()

    def requests() -> None:
        nonlocal admitted
        for _ in range(40):
            if stack.get(path, headers).status == 200:
                with lock:
                    admitted += 1

    def top_ups() -> None:
        for _ in range(20):
            _top_up(stack, billing, app.id, "0.07")

    threads = [threading.Thread(target=requests) for _ in range(3)] + [
        threading.Thread(target=top_ups) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # The one request of the readiness poll above was admitted too.
    expected = Decimal("5.00") + 40 * Decimal("0.07") - (admitted + 1) * Decimal("0.01")
    assert _settled(stack, billing, app.id, expected) == expected
    assert _ledger_sum(stack, billing, app.id) == expected

    # A usage replay: the same access-log entries sent twice are counted, and burned, once.
    usage = stack.process.running["usage"].ingestor  # type: ignore[attr-defined]
    ids = [f"replay-{uuid.uuid4().hex}-{i}" for i in range(5)]
    entries = [
        entry(200, api_id=api.id, subscription_id=sub.id, application_id=app.id, plan_id=plan.id,
              request_id=rid, route_name=f"api_{api.id}")
        for rid in ids
    ]  # fmt: skip
    raw = message(entries, "replay-node").SerializeToString()
    for _ in range(2):
        stack.run(usage.submit("replay-node", raw, len(entries)))
    expected -= 5 * Decimal("0.01")
    assert _settled(stack, billing, app.id, expected) == expected
    for _ in range(3):  # rounds of metering over the same counts burn nothing more
        _metering_round(stack)
    time.sleep(1.0)
    assert _balance(stack, billing, app.id) == expected == _ledger_sum(stack, billing, app.id)

    # The period's invoice shows what credit paid: all of its metered charge (no fee on this plan).
    month = datetime.now(UTC).strftime("%Y-%m")
    request = bpb.GenerateInvoicesRequest(application_id=app.id, billing_month=month)
    generated = stack.call(billing.GenerateInvoices, request)
    (invoice,) = generated.invoices
    burned = Decimal("5.00") + 40 * Decimal("0.07") - expected
    assert Decimal(invoice.total) == burned == Decimal(invoice.paid_from_credit)
    assert Decimal(invoice.amount_due) == 0

    # A retried top-up (same request id) adds nothing.
    first = _top_up(stack, billing, app.id, "1.00", request_id="retry-1")
    again = _top_up(stack, billing, app.id, "1.00", request_id="retry-1")
    assert first.created and not again.created and again.entry.id == first.entry.id
    assert _balance(stack, billing, app.id) == expected + 1


@pytest.mark.parametrize(
    ("fields", "code", "words"),
    [
        ({"amount": "-5.00"}, grpc.StatusCode.INVALID_ARGUMENT, "negative"),
        ({"amount": "0"}, grpc.StatusCode.INVALID_ARGUMENT, "positive"),
        ({"amount": "1.001"}, grpc.StatusCode.INVALID_ARGUMENT, "fractional digits"),
        ({"currency": "XYZ"}, grpc.StatusCode.INVALID_ARGUMENT, "unknown currency"),
        ({"currency": "BGN"}, grpc.StatusCode.INVALID_ARGUMENT, "no longer"),
        ({"application_id": "app_missing"}, grpc.StatusCode.NOT_FOUND, "not found"),
        ({"request_id": ""}, grpc.StatusCode.INVALID_ARGUMENT, "request_id"),
    ],
)
def test_bad_top_ups_are_refused_and_write_nothing(
    stack: Stack, billing: Any, fields: dict[str, str], code: grpc.StatusCode, words: str
) -> None:
    app = stack.create_application(f"bad-{uuid.uuid4().hex[:8]}")
    request: dict[str, str] = {
        "application_id": app.id,
        "currency": "USD",
        "amount": "1.00",
        "request_id": "r1",
    }
    request.update(fields)
    with pytest.raises(grpc.RpcError) as raised:
        stack.call(billing.TopUpCredit, bpb.TopUpCreditRequest(**request))
    assert raised.value.code() == code and words in (raised.value.details() or ""), raised.value.details()
    balances = stack.call(billing.GetCreditBalance, bpb.GetCreditBalanceRequest(application_id=app.id))
    assert not balances.balances
    assert not stack.call(
        billing.ListCreditEntries, bpb.ListCreditEntriesRequest(application_id=app.id)
    ).entries


def test_spend_cap_refuses_and_raises_each_alert_once(stack: Stack, billing: Any) -> None:
    plan = _plan(stack, "capped-postpaid", prepaid=False)
    _, _, sub, headers, path = _consumer(stack, plan, "capped")
    with pytest.raises(grpc.RpcError) as raised:
        cap = bpb.SpendCap(scope="SUBSCRIPTION", target_id=sub.id, kind="REQUESTS", limit="-1")
        stack.call(billing.SetSpendCap, bpb.SetSpendCapRequest(cap=cap))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not stack.call(billing.ListSpendCaps, bpb.ListSpendCapsRequest(target_id=sub.id)).caps

    cap = bpb.SpendCap(scope="SUBSCRIPTION", target_id=sub.id, kind="REQUESTS", limit="4")
    stack.call(billing.SetSpendCap, bpb.SetSpendCapRequest(cap=cap))
    stack.wait_for_status(path, 200, headers, timeout=5)
    for _ in range(3):
        stack.get(path, headers)
    refused, _ = stack.wait_for_status(path, 402, headers, timeout=10)
    assert refused.status == 402
    assert json.loads(refused.body)["type"] == problem_type("spend_cap_reached")

    for _ in range(3):
        _metering_round(stack)
    alerts = stack.call(
        billing.ListAlerts, bpb.ListAlertsRequest(target_id=sub.id, kinds=["CAP_REQUESTS"])
    ).alerts
    assert sorted(a.threshold for a in alerts) == [50, 80, 100]

    # Clearing the cap admits again.
    stack.call(
        billing.ClearSpendCap,
        bpb.ClearSpendCapRequest(scope="SUBSCRIPTION", target_id=sub.id, kind="REQUESTS"),
    )
    admitted, took = stack.wait_for_status(path, 200, headers, timeout=5)
    assert admitted.status == 200 and took < PROPAGATION_SECONDS, took


def test_cli_tops_up_caps_and_lists_alerts(stack: Stack, billing: Any) -> None:
    from typer.testing import CliRunner

    from tollway.app.cli import app as tollway_cli

    def cli(*args: str) -> Any:
        options = ["--addr", stack.settings.admin_addr, "--token", stack.settings.admin_token]
        return CliRunner().invoke(tollway_cli, ["billing", *args, *options])

    plan = _plan(stack, "cli-prepaid", prepaid=True)
    _, app, sub, _, _ = _consumer(stack, plan, "cli")
    done = cli(
        "top-up", "--application", app.id, "--amount", "12.50", "--currency", "USD", "--request-id", "c1"
    )
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["balance"]["balance"] == "12.50"
    shown = cli("balance", "--application", app.id)
    assert json.loads(shown.output)["balances"][0]["balance"] == "12.50"
    refused = cli("top-up", "--application", app.id, "--amount", "-1", "--currency", "USD")
    assert refused.exit_code != 0 and "negative" in refused.output
    assert len(json.loads(cli("ledger", "--application", app.id).output)["entries"]) == 1

    capped = cli("cap", "--scope", "subscription", "--target", sub.id, "--kind", "requests", "--limit", "100")
    assert capped.exit_code == 0, capped.output
    listed = json.loads(cli("caps", "--target", sub.id).output)["caps"]
    assert [(c["kind"], c["limit"]) for c in listed] == [("REQUESTS", "100")]
    below = cli("cap", "--scope", "subscription", "--target", sub.id, "--kind", "requests", "--limit", "-5")
    assert below.exit_code != 0 and "negative" in below.output
    assert cli("alerts", "--target", sub.id).exit_code == 0
    assert (
        cli("clear-cap", "--scope", "subscription", "--target", sub.id, "--kind", "requests").exit_code == 0
    )

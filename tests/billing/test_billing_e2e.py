"""Through a real Envoy: the approval workflow at the gateway, and requests → usage → invoice with the
exact expected total, reconciled against the rate limiter's own count; in both throttle modes
(ratelimit, and authz where Check applies the limits), with the same assertions."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from tests.e2e.harness import Stack, start_stack, stop_stack
from tollway.billing.v1 import billing_pb2 as pb
from tollway.billing.v1 import billing_pb2_grpc
from tollway.catalog.v1 import catalog_pb2
from tollway.store.v1 import store_pb2
from tollway.vocabulary import ThrottleMode

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=list(ThrottleMode), ids=str)
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    started = start_stack(Path(tmp_path_factory.mktemp("billing-stack")), throttle_mode=request.param)
    try:
        yield started
    finally:
        stop_stack(started)


@pytest.fixture(scope="module")
def billing(stack: Stack) -> billing_pb2_grpc.BillingServiceStub:
    return billing_pb2_grpc.BillingServiceStub(stack._channel)


def problem_reason(stack: Stack, path: str, key: str) -> tuple[int, str]:
    response = stack.get(path, {"x-api-key": key})
    reason = response.json().get("reason", "") if response.status != 200 else ""
    return response.status, reason


def test_approval_workflow_at_the_gateway(stack: Stack, billing: billing_pb2_grpc.BillingServiceStub) -> None:
    plan = stack.create_plan("approval-e2e", approval_required=True)
    api = stack.create_api("approved-api", "/approved/v1", [plan.id])
    app = stack.create_application("approval-app")
    sub = stack.subscribe(app.id, api.id, plan.id)
    assert sub.state == store_pb2.SUBSCRIPTION_STATE_PENDING_APPROVAL
    key = stack.issue_key(app.id).key
    path = "/approved/v1/data"

    response, _ = stack.wait_for_status(path, 403, {"x-api-key": key}, timeout=10)
    assert response.status == 403
    assert response.json()["reason"] == "subscription_pending_approval"
    pending = stack.call(billing.ListPendingSubscriptions, pb.ListPendingSubscriptionsRequest())
    assert sub.id in {s.id for s in pending.subscriptions}

    stack.call(billing.ApproveSubscription, pb.ApproveSubscriptionRequest(subscription_id=sub.id))
    response, seconds = stack.wait_for_status(path, 200, {"x-api-key": key}, timeout=5)
    assert response.status == 200 and seconds < 1.0, seconds

    stack.call(
        billing.SuspendSubscription, pb.SuspendSubscriptionRequest(subscription_id=sub.id, reason="unpaid")
    )
    response, seconds = stack.wait_for_status(path, 403, {"x-api-key": key}, timeout=5)
    assert response.status == 403 and seconds < 1.0, seconds
    assert response.json()["reason"] == "subscription_suspended"

    stack.call(billing.ResumeSubscription, pb.ResumeSubscriptionRequest(subscription_id=sub.id))
    response, seconds = stack.wait_for_status(path, 200, {"x-api-key": key}, timeout=5)
    assert response.status == 200 and seconds < 1.0, seconds


def test_requests_through_envoy_are_invoiced_exactly(
    stack: Stack, billing: billing_pb2_grpc.BillingServiceStub
) -> None:
    pricing = catalog_pb2.PlanPricing(
        currency="EUR",
        included_requests=2,
        tiers=[
            catalog_pb2.PriceTier(up_to=5, unit_price="0.10"),
            catalog_pb2.PriceTier(up_to=0, unit_price="0.0004"),
        ],
    )
    plan = stack.create_plan("invoice-e2e", pricing=pricing)
    api = stack.create_api("metered-api", "/metered/v1", [plan.id])
    app = stack.create_application("metered-app")
    sub = stack.subscribe(app.id, api.id, plan.id)
    key = stack.issue_key(app.id).key
    stack.wait_for_status("/metered/v1/x", 200, {"x-api-key": key}, timeout=10)
    statuses = [stack.get(f"/metered/v1/item/{i}", {"x-api-key": key}).status for i in range(20)]
    ok = 1 + statuses.count(200)  # the readiness probe that answered 200 is billed too
    assert ok == 21

    # Envoy flushes its access-log buffer about once a second; usage/ then writes the summaries.
    deadline = time.monotonic() + 20
    summary = None
    while time.monotonic() < deadline:
        summary = stack.call(billing.GetUsageSummary, pb.GetUsageSummaryRequest(subscription_id=sub.id))
        if summary.total.success >= ok:
            break
        time.sleep(0.2)
    assert summary is not None and summary.total.success == ok, summary

    month = datetime.now(UTC).strftime("%Y-%m")
    [invoice] = stack.call(
        billing.GenerateInvoices, pb.GenerateInvoicesRequest(billing_month=month, subscription_id=sub.id)
    ).invoices
    # 21 requests: 2 included, 5 x 0.10, 14 x 0.0004 = 0.0056 -> 0.01 (rounded once, half-even)
    expected = Decimal("0.50") + (Decimal(ok - 2 - 5) * Decimal("0.0004")).quantize(Decimal("0.01"))
    assert Decimal(invoice.total) == expected == Decimal("0.51")
    assert invoice.currency == "EUR" and invoice.application_id == app.id
    # Completeness comes from usage/ over its gRPC contract (reachable: this stack hosts it).
    assert invoice.usage_completeness != pb.USAGE_COMPLETENESS_UNSPECIFIED
    assert "unavailable" not in invoice.completeness_note, invoice.completeness_note
    final = stack.call(billing.FinalizeInvoice, pb.FinalizeInvoiceRequest(id=invoice.id)).invoice
    assert final.number.startswith("INV-") and final.total == invoice.total

    [reconciled] = stack.call(
        billing.ReconcileUsage, pb.ReconcileUsageRequest(subscription_id=sub.id)
    ).subscriptions
    assert reconciled.limiter_available, reconciled.note
    assert reconciled.billed_successful == ok
    assert reconciled.limiter_admitted == ok and reconciled.difference == 0


def test_cli_drives_the_billing_service(stack: Stack, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from tollway.app.cli import app as cli_app

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(
            cli_app,
            ["billing", *args, "--addr", stack.settings.admin_addr, "--token", stack.settings.admin_token],
        )
        return result.exit_code, result.output

    plan = stack.create_plan(
        "cli-e2e",
        approval_required=True,
        pricing=catalog_pb2.PlanPricing(currency="JPY", recurring_fee="3000"),
    )
    api = stack.create_api("cli-api", "/cli/v1", [plan.id])
    app = stack.create_application("cli-app")
    sub = stack.subscribe(app.id, api.id, plan.id)

    code, out = run("pending")
    assert code == 0 and sub.id in out
    code, out = run("reject", sub.id)
    assert code == 2 and "--reason" in out  # usage error, nothing sent
    code, out = run("approve", sub.id)
    assert code == 0 and json.loads(out)["subscription"]["state"] == "SUBSCRIPTION_STATE_ACTIVE"
    code, out = run("events", sub.id)
    assert code == 0 and json.loads(out)["events"][0]["kind"] == "APPROVED"

    code, out = run(
        "account", "create", "--name", "Cli KK", "--email", "ap@cli.example", "--tax-id", "T1234567890123",
        "--address", "1-1 Chiyoda", "--address", "Tokyo",
    )  # fmt: skip
    assert code == 0, out
    account = json.loads(out)["billing_account"]
    assert account["address"] == "1-1 Chiyoda\nTokyo"
    code, out = run("account", "assign", "--application", app.id, "--account", account["id"])
    assert code == 0, out
    code, out = run(
        "tax", "add", "--account", account["id"], "--name", "JCT 10%", "--rate", "10", "--inclusive"
    )
    assert code == 0 and json.loads(out)["tax_rate"]["inclusive"] is True, out
    code, out = run("account", "create", "--name", "Bad", "--email", "not-an-email")
    assert code == 1 and "INVALID_ARGUMENT" in out and "email" in out

    month = datetime.now(UTC).strftime("%Y-%m")
    code, out = run("generate", "--month", month, "--sub", sub.id)
    assert code == 0, out
    [invoice] = json.loads(out)["invoices"]
    assert invoice["currency"] == "JPY" and int(invoice["total"]) <= 3000
    assert invoice["customer"]["name"] == "Cli KK"
    # Inclusive JCT: net = round(gross / 1.1) (half-even), the tax the rest; nothing added to the total.
    gross = int(invoice["subtotal"])
    [tax] = invoice["taxes"]
    assert int(tax["amount"]) == gross - round(Fraction(gross) / Fraction(11, 10))
    assert invoice["total"] == invoice["subtotal"]
    code, out = run("finalize", invoice["id"])
    number = json.loads(out)["invoice"]["number"]
    assert code == 0 and number.startswith("INV-")
    code, out = run("credit", number, "--reason", "goodwill", "--line", "0:1000")
    assert code == 0, out
    credit_note = json.loads(out)["credit_note"]
    assert credit_note["number"].startswith("CN-") and credit_note["total"] == "1000"
    code, out = run("credit-notes", "--invoice", number)
    assert code == 0 and [n["number"] for n in json.loads(out)["credit_notes"]] == [credit_note["number"]]
    code, out = run("credit", number, "--reason", "x", "--line", "zero")
    assert code == 2  # usage error, nothing sent
    target = tmp_path / "invoices.csv"
    code, _ = run("export", "--month", month, "--format", "csv", "-o", str(target))
    assert code == 0 and number in target.read_text() and credit_note["number"] in target.read_text()
    code, out = run("export", "--month", month, "--format", "jsonl", "--state", "finalized")
    assert code == 0 and any(json.loads(line)["number"] == number for line in out.splitlines())
    code, out = run("show", "INV-999999")
    assert code == 1 and "NOT_FOUND" in out
    code, out = run("generate", "--start", "2026-12-01", "--end", "2026-11-01")
    assert code == 1 and "INVALID_ARGUMENT" in out


def test_billing_requires_the_admin_token(stack: Stack, billing: billing_pb2_grpc.BillingServiceStub) -> None:
    import grpc

    for metadata in ((), (("authorization", "Bearer wrong-token"),)):
        with pytest.raises(grpc.RpcError) as info:
            billing.ListPendingSubscriptions(
                pb.ListPendingSubscriptionsRequest(), metadata=metadata, timeout=5
            )
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]

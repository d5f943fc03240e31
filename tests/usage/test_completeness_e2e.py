"""Through a real Envoy: every access-log entry Envoy writes is accounted for, counted or skipped for a
stated reason, so real traffic mixed with unrouted paths (Envoy's catch-all 404), malformed requests
and refusals (401, 403, 429) reaches completeness 1.0, and the month's invoice finalizes without an
override (the override, for a period that is incomplete: tests/billing/test_finalize_completeness.py)."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections import Counter
from datetime import UTC, datetime

import pytest

from tests.e2e.harness import Stack
from tests.usage.usage_stack import today, usage_stub, wait_until
from tollway.billing.v1 import billing_pb2 as pb
from tollway.billing.v1 import billing_pb2_grpc
from tollway.catalog.v1 import catalog_pb2
from tollway.usage.v1 import usage_pb2
from usage.completeness import WRITTEN
from usage.process import Usage

pytestmark = pytest.mark.e2e


def envoy_written(stack: Stack) -> int:
    url = f"http://{stack.settings.envoy_admin_addr}/stats?format=json&filter=grpc_access_log"
    with urllib.request.urlopen(url, timeout=5) as response:
        stats = {
            item["name"]: item.get("value", 0) for item in json.load(response)["stats"] if "name" in item
        }
    return int(stats.get(WRITTEN, 0))


def malformed_request(stack: Stack) -> bytes:
    """A request Envoy refuses before routing it (a header line without a colon): 400 from its codec."""
    host, port = stack.settings.gateway_addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"GET /anything HTTP/1.1\r\nHost: x\r\nnot a header\r\n\r\n")
        return sock.recv(1024)


def node_report(stack: Stack) -> usage_pb2.NodeCompleteness | None:
    usage = stack.process.find(Usage)
    assert usage is not None
    stack.run(usage.sampler.sample_once())
    start, end = today()
    nodes = stack.call(
        usage_stub(stack).GetCompleteness, usage_pb2.GetCompletenessRequest(start_time=start, end_time=end)
    ).nodes
    return next((n for n in nodes if n.node_id == "e2e"), None)


def test_mixed_traffic_with_unrouted_and_refused_requests_is_complete(stack: Stack) -> None:
    plan = stack.create_plan(
        "complete-tight",
        limits=catalog_pb2.PlanLimits(requests_per_minute=4),
        pricing=catalog_pb2.PlanPricing(currency="EUR", unit_price="0.01"),
    )
    api = stack.create_api("complete", "/complete/v1", [plan.id])
    app = stack.create_application("complete-app")
    sub = stack.subscribe(app.id, api.id, plan.id)
    key = stack.issue_key(app.id).key
    stranger = stack.issue_key(stack.create_application("not-subscribed").id).key
    # While config and keys propagate the polls see 404s (unrouted) and 401s: accounted like the rest.
    stack.wait_for_status("/complete/v1/ready", 200, {"x-api-key": key}, timeout=10)
    # The second key is issued later than the first, so it can become visible later (401 until then).
    stack.wait_for_status("/complete/v1/ready", 403, {"x-api-key": stranger}, timeout=10)

    statuses: Counter[int] = Counter()
    for _ in range(6):  # 3 more fit in the minute, then 429s
        statuses[stack.get("/complete/v1/items", {"x-api-key": key}).status] += 1
    statuses[stack.get("/complete/v1/items").status] += 1  # no key
    statuses[stack.get("/complete/v1/items", {"x-api-key": "tw_" + "a" * 12 + "_" + "b" * 32}).status] += 1
    statuses[stack.get("/complete/v1/items", {"x-api-key": stranger}).status] += 1  # not subscribed
    unrouted = ("/wp-login.php", "/complete/v2/items", "/")
    for path in unrouted:
        statuses[stack.get(path).status] += 1
    assert statuses[200] >= 1 and statuses[429] >= 1 and statuses[401] == 2 and statuses[403] == 1
    assert statuses[404] == len(unrouted)
    answer = malformed_request(stack)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:40]

    def settled() -> usage_pb2.NodeCompleteness | None:
        node = node_report(stack)
        written = envoy_written(stack)
        if node is None or node.logs_written != written or node.accounted != written:
            return None
        return node

    node = wait_until(settled, timeout=20, interval=0.3)
    assert node is not None, (node_report(stack), envoy_written(stack))
    assert node.completeness == 1.0 and node.logs_dropped == 0
    assert node.skipped["unrouted"] >= len(unrouted)
    assert node.skipped["before_routing"] >= 1  # the malformed request
    assert node.received + sum(node.skipped.values()) == node.accounted == node.logs_written
    # The same reasons in the replica's own stats.
    stats = stack.call(usage_stub(stack).GetIngestionStats, usage_pb2.GetIngestionStatsRequest())
    assert stats.skipped["unrouted"] >= len(unrouted)

    # The month's invoice: usage COMPLETE, finalized without an override.
    billing = billing_pb2_grpc.BillingServiceStub(stack._channel)
    month = datetime.now(UTC).strftime("%Y-%m")
    [invoice] = stack.call(
        billing.GenerateInvoices, pb.GenerateInvoicesRequest(billing_month=month, subscription_id=sub.id)
    ).invoices
    assert invoice.usage_completeness == pb.USAGE_COMPLETENESS_COMPLETE, invoice.completeness_note
    final = stack.call(billing.FinalizeInvoice, pb.FinalizeInvoiceRequest(id=invoice.id)).invoice
    assert final.state == pb.INVOICE_STATE_FINALIZED and not final.HasField("completeness_override")
    assert "not billable" in final.completeness_note and "unrouted" in final.completeness_note

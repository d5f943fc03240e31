"""Prepaid credit with `--workers 2` (two keymgr replicas, each with its own in-memory index, both
round-robined by Envoy): every replica refuses within a second of the balance reaching zero and
admits within a second of a top-up."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import grpc
import pytest

from tests.e2e.harness import Stack, start_stack, stop_stack
from tests.throttle.throttle_fixtures import SHARED_REDIS_URL, unique
from tollway.billing.v1 import billing_pb2 as bpb
from tollway.billing.v1 import billing_pb2_grpc
from tollway.catalog.v1 import catalog_pb2

pytestmark = pytest.mark.e2e
PROPAGATION_SECONDS = 1.0
# Consecutive answers that show every replica agrees (Envoy alternates between the two workers).
STREAK = 8
# A top-up covers several streaks: while one replica still refuses, the other already admits and
# spends credit, so a top-up of only a streak's worth can run out before a streak of 200s is seen.
TOP_UP_CALLS = 5 * STREAK


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    started = start_stack(
        Path(tmp_path_factory.mktemp("prepaid-workers")),
        workers=2,
        ratelimit_store="redis",
        redis_url=SHARED_REDIS_URL,
        redis_timeout_ms=1000,
    )
    try:
        yield started
    finally:
        stop_stack(started)


def _streak_after(stack: Stack, path: str, headers: dict[str, str], status: int, since: float) -> float:
    """Seconds from `since` to the first of STREAK consecutive answers of `status`."""
    run_start: float | None = None
    run = 0
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        sent = time.monotonic()
        if stack.get(path, headers).status == status:
            run_start = sent if run == 0 else run_start
            run += 1
            if run >= STREAK:
                assert run_start is not None
                return run_start - since
        else:
            run = 0
    raise AssertionError(f"no streak of {STREAK} answers {status}")


def test_every_replica_refuses_at_zero_and_admits_after_a_top_up(stack: Stack) -> None:
    billing = billing_pb2_grpc.BillingServiceStub(grpc.insecure_channel(stack.settings.admin_addr))
    plan = stack.create_plan(
        unique("prepaid"), pricing=catalog_pb2.PlanPricing(currency="EUR", unit_price="1.00"), prepaid=True
    )
    api = stack.create_api(unique("api"), f"/{unique('p')}/v1", [plan.id])
    app = stack.create_application(unique("app"))
    stack.subscribe(app.id, api.id, plan.id)
    headers = {"x-api-key": stack.issue_key(app.id).key}
    path = api.context_path + "/items"
    _streak_after(stack, path, headers, 402, time.monotonic())  # the key reached both replicas

    def top_up(amount: str) -> float:
        request = bpb.TopUpCreditRequest(
            application_id=app.id, currency="EUR", amount=amount, request_id=uuid.uuid4().hex
        )
        stack.call(billing.TopUpCredit, request)
        return time.monotonic()

    took = _streak_after(stack, path, headers, 200, top_up(str(TOP_UP_CALLS)))
    assert took < PROPAGATION_SECONDS, took

    # Keep calling (each 1.00) until the balance is used up; then every replica refuses within 1 s.
    def balance() -> Decimal:
        found = stack.call(billing.GetCreditBalance, bpb.GetCreditBalanceRequest(application_id=app.id))
        return Decimal(found.balances[0].balance)

    deadline = time.monotonic() + 30
    while balance() > 0 and time.monotonic() < deadline:
        stack.get(path, headers)
    assert balance() <= 0
    took = _streak_after(stack, path, headers, 402, time.monotonic())
    assert took < PROPAGATION_SECONDS, took

    # Calls admitted before a replica learnt of the zero leave the balance below it once their usage is
    # metered: the top-up covers that debt too, read once no debit is still on its way.
    settled, deadline = balance(), time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(1.0)
        settled, previous = balance(), settled
        if settled == previous:
            break
    took = _streak_after(stack, path, headers, 200, top_up(str(-settled + TOP_UP_CALLS)))
    assert took < PROPAGATION_SECONDS, took

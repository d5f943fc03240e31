"""PostgreSQL stopped, then frozen (SIGSTOP), under a whole stack and a real Envoy: a private cluster of
the test's own (tests/private_postgres.py), with short database deadlines.

While the database is away: an admin write answers UNAVAILABLE, with a reason, before its caller's
deadline; Check and ShouldRateLimit keep answering from memory (requests through Envoy get 200, each
decided by the throttle; a missing key 401); every access-log entry Envoy sends is received into
usage's WAL.
When it is back, with no restart of anything: admin writes work, the WAL is applied (each request
counted exactly once) and a key revoked after recovery is refused at the gateway."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from tests.e2e.harness import Stack, start_stack, stop_stack
from tests.private_postgres import PrivatePostgres
from tests.usage.usage_stack import totals_by
from throttle.process import Throttle
from tollway.catalog.v1 import catalog_pb2
from tollway.store.v1 import store_pb2
from tollway.usage.v1 import usage_pb2
from usage.process import Usage

pytestmark = pytest.mark.e2e

# Short deadlines keep the test seconds-long; the client waits far longer than the server's deadline,
# so an answer of UNAVAILABLE (rather than the client's DEADLINE_EXCEEDED) shows the server kept it.
DATABASE_TIMEOUT_MS = 1000
CONNECT_TIMEOUT_MS = 500
ADMIN_TIMEOUT_MS = 4000
CLIENT_TIMEOUT_S = 20.0
RECOVERY_S = 30.0


@pytest.fixture
def pg_stack(tmp_path: Path) -> Iterator[tuple[Stack, PrivatePostgres]]:
    postgres = PrivatePostgres()
    try:
        postgres.start()
        stack = start_stack(
            tmp_path,
            database_url=postgres.url,
            database_timeout_ms=DATABASE_TIMEOUT_MS,
            database_connect_timeout_ms=CONNECT_TIMEOUT_MS,
            admin_timeout_ms=ADMIN_TIMEOUT_MS,
            usage_flush_ms=100,
            # What is tested is that Check and ShouldRateLimit answer from memory while the database is
            # down, not their latency: late in a loaded suite a Check past Envoy's default 250 ms
            # became its 503 (status_on_error). A stall of the serving loop by the outage still fails.
            authz_timeout_ms=5000,
            ratelimit_timeout_ms=5000,
        )
        try:
            yield stack, postgres
        finally:
            postgres.thaw()
            stop_stack(stack)
    finally:
        postgres.destroy()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = RECOVERY_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.1)


class Traffic:
    """Requests through Envoy with one key, and how many were answered (each must be counted once)."""

    def __init__(self, stack: Stack, path: str, key: str, plan_id: str) -> None:
        self.stack, self.path, self.headers = stack, path, {"x-api-key": key}
        self.plan_id = plan_id
        self.answered = 0

    def decided(self) -> int:
        """ShouldRateLimit decisions the throttle made for the plan."""
        throttle = self.stack.process.find(Throttle)
        assert throttle is not None
        return sum(n for (plan, _), n in throttle.metrics.decisions.items() if plan == self.plan_id)

    def send(self, count: int) -> None:
        decided = self.decided()
        for _ in range(count):
            response = self.stack.get(self.path, self.headers)
            self.answered += 1
            assert response.status == 200, response.body
        # Each request's ShouldRateLimit was decided by the throttle, from its memory. (Not asserted
        # through the response's rate-limit headers: on a loaded machine Envoy's 250 ms deadline may
        # pass first, and the request is then admitted by Envoy's failure mode.)
        wait_for(lambda: self.decided() == decided + count, "the throttle decided each request", 10)


def create_plan(stack: Stack, name: str) -> catalog_pb2.Plan:
    request = catalog_pb2.CreatePlanRequest(plan=catalog_pb2.Plan(name=name))
    return stack.catalog.CreatePlan(request, metadata=stack.auth, timeout=CLIENT_TIMEOUT_S).plan


def assert_admin_write_unavailable(stack: Stack, name: str) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        create_plan(stack, name)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value.details()
    assert "database unavailable" in (refused.value.details() or "")


def assert_answering_from_memory(stack: Stack, traffic: Traffic) -> None:
    usage = stack.process.find(Usage)
    assert usage is not None
    metrics = usage.ingestor.metrics
    received, failures = metrics.received, metrics.flush_failures
    traffic.send(10)
    assert stack.get(traffic.path).status == 401  # Check refuses from its snapshot too
    # 11 entries (10 answered, 1 refused), all received into the WAL; applying them fails meanwhile,
    # and they stay there.
    wait_for(lambda: metrics.received >= received + 11, "entries received", 10)
    wait_for(lambda: metrics.flush_failures > failures, "a flush tried and failed", 15)
    assert usage.ingestor.unflushed >= 11


def assert_recovered(stack: Stack, traffic: Traffic, api_id: str, subscription_id: str) -> None:
    def write_works() -> bool:
        try:
            create_plan(stack, f"after-{time.monotonic_ns()}")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
            return False
        return True

    wait_for(write_works, "admin writes working again")

    def counted() -> int:
        row = totals_by(stack, api_id, usage_pb2.DIMENSION_SUBSCRIPTION).get((subscription_id,))
        return row.requests if row is not None else 0

    wait_for(lambda: counted() >= traffic.answered, "the WAL applied to the database")
    usage = stack.process.find(Usage)
    assert usage is not None
    wait_for(lambda: usage.ingestor.unflushed == 0, "nothing left unflushed", 10)
    assert counted() == traffic.answered  # each request counted once


def plan_names(stack: Stack) -> list[str]:
    """The plans, read as soon as reads work again: right after the restart a read can still meet a
    pooled connection from before it (replaced on its first use) and run past its 1 s deadline."""
    names: list[str] = []

    def read() -> bool:
        try:
            answer = stack.call(stack.catalog.ListPlans, catalog_pb2.ListPlansRequest())
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
            return False
        names[:] = [plan.name for plan in answer.plans]
        return True

    wait_for(read, "admin reads working again")
    return names


def revoke_and_expect_refusal(stack: Stack, key: store_pb2.CreateApiKeyResponse, path: str) -> None:
    stack.call(stack.store.RevokeApiKey, store_pb2.RevokeApiKeyRequest(key_id=key.api_key.key_id))
    response, _ = stack.wait_for_status(path, 401, {"x-api-key": key.key}, timeout=10)
    assert response.status == 401


def test_postgres_stopped_then_frozen(pg_stack: tuple[Stack, PrivatePostgres]) -> None:
    stack, postgres = pg_stack
    assert stack.process.db.is_postgres
    plan = stack.create_plan("faults-plan", limits=catalog_pb2.PlanLimits(requests_per_minute=100_000))
    api = stack.create_api("faults-api", "/faults/v1", [plan.id])
    app = stack.create_application("faults-app")
    subscription = stack.subscribe(app.id, api.id, plan.id)
    key = stack.issue_key(app.id).key
    # Keys of another application, revoked after each recovery (their requests count elsewhere).
    spare = stack.create_application("faults-spare")
    stack.subscribe(spare.id, api.id, plan.id)
    spare_keys = [stack.issue_key(spare.id) for _ in range(2)]
    path = "/faults/v1/x"
    stack.wait_for_status(path, 200, {"x-api-key": spare_keys[1].key})
    traffic = Traffic(stack, path, key, plan.id)
    traffic.send(5)

    # 1. Stopped: connections refused.
    postgres.stop()
    assert_admin_write_unavailable(stack, "written-while-stopped")
    assert_answering_from_memory(stack, traffic)
    postgres.start()
    assert_recovered(stack, traffic, api.id, subscription.id)
    assert "written-while-stopped" not in plan_names(stack)
    revoke_and_expect_refusal(stack, spare_keys[0], path)

    # 2. Frozen: connections accepted by the kernel, nothing answers; only deadlines end the calls.
    postgres.freeze()
    assert_admin_write_unavailable(stack, "written-while-frozen")
    assert_answering_from_memory(stack, traffic)
    postgres.thaw()
    assert_recovered(stack, traffic, api.id, subscription.id)
    revoke_and_expect_refusal(stack, spare_keys[1], path)
    traffic.send(3)
    assert_recovered(stack, traffic, api.id, subscription.id)

"""Health says whether the limits can be applied, through a real Envoy: in deny mode, with a
redis-server of the test's own stopped, ShouldRateLimit's service (and the Envoy-facing server as a
whole; in the fused mode Check's service too) goes NOT_SERVING and Envoy's active health check of the
cluster that applies the limits fails; with Redis back, both recover by themselves."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.e2e.envoy_health import health_check_stats, hosts_passing
from tests.e2e.harness import Stack, start_stack, stop_stack
from tests.support import EnvoyCredential
from tests.throttle.throttle_fixtures import PrivateRedis
from throttle.envoy_config import THROTTLE_CLUSTER
from tollway.envoy_contract import AUTHORIZATION_SERVICE, RATE_LIMIT_SERVICE
from tollway.vocabulary import ThrottleMode
from xds.resources import KEYMGR_CLUSTER

pytestmark = pytest.mark.e2e

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            server.process.send_signal(signal.SIGCONT)
        server.stop()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.1)


def health(stack: Stack, service: str) -> int:
    with EnvoyCredential(stack.settings).channel() as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
        return int(answer.status)


@pytest.mark.parametrize("mode", [ThrottleMode.RATELIMIT, ThrottleMode.AUTHZ])
def test_health_follows_the_counters_in_deny_mode(
    tmp_path: Path, redis_server: PrivateRedis, mode: ThrottleMode
) -> None:
    """ratelimit mode: ShouldRateLimit's service is the one that cannot count. Fused (authz) mode:
    Check applies the limits itself, so Check's service cannot answer either (and Envoy, told of no
    throttle cluster, checks keymgr's)."""
    stack = start_stack(
        tmp_path / "stack",
        ratelimit_store="redis",
        redis_url=redis_server.url,
        ratelimit_failure_mode="deny",
        throttle_mode=mode,
    )
    fused = mode == ThrottleMode.AUTHZ
    checked = KEYMGR_CLUSTER if fused else THROTTLE_CLUSTER
    down = [RATE_LIMIT_SERVICE, ""] + ([AUTHORIZATION_SERVICE] if fused else [])
    try:
        assert all(health(stack, service) == SERVING for service in down)
        wait_for(lambda: hosts_passing(stack.envoy, checked) == [True], "Envoy's check passing")

        redis_server.stop()
        wait_for(lambda: health(stack, RATE_LIMIT_SERVICE) == NOT_SERVING, "throttle NOT_SERVING")
        assert all(health(stack, service) == NOT_SERVING for service in down)
        if not fused:
            assert health(stack, AUTHORIZATION_SERVICE) == SERVING  # Check does not need the counters
        wait_for(lambda: hosts_passing(stack.envoy, checked) == [False], "Envoy's check failing")
        assert health_check_stats(stack.envoy, checked)["failure"] >= 1

        redis_server.start()
        wait_for(lambda: health(stack, RATE_LIMIT_SERVICE) == SERVING, "throttle SERVING again")
        assert all(health(stack, service) == SERVING for service in down)
        wait_for(lambda: hosts_passing(stack.envoy, checked) == [True], "Envoy's check passing again")
    finally:
        stop_stack(stack)

"""Envoy checks the health of every Tollway service it calls (grpc.health.v1, by service name), and in a
healthy stack every check passes: Envoy's /clusters shows each endpoint passing and its counters show
successful checks."""

from __future__ import annotations

import time

import pytest

from tests.e2e.envoy_health import health_check_stats, hosts_passing
from tests.e2e.harness import Stack
from throttle.envoy_config import THROTTLE_CLUSTER
from xds.resources import KEYMGR_CLUSTER, USAGE_CLUSTER

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("cluster", [KEYMGR_CLUSTER, THROTTLE_CLUSTER, USAGE_CLUSTER])
def test_envoys_health_checks_of_tollway_pass(stack: Stack, cluster: str) -> None:
    deadline = time.monotonic() + 15
    while (
        hosts_passing(stack.envoy, cluster) != [True]
        or health_check_stats(stack.envoy, cluster).get("success", 0) < 1
    ):
        assert time.monotonic() < deadline, (
            f"{cluster}: {hosts_passing(stack.envoy, cluster)} {health_check_stats(stack.envoy, cluster)}"
        )
        time.sleep(0.1)
    assert health_check_stats(stack.envoy, cluster)["healthy"] == 1

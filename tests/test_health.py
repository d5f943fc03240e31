"""Truthful health, without servers beyond in-process gRPC: each service's status on the standard
health service follows its readiness (latched) and its live health check, the whole server ("") only
while every service serves; and every Envoy cluster of a Tollway service checks its service's health.
Redis really failing, through a real Envoy: tests/throttle/test_throttle_health.py."""

from __future__ import annotations

from typing import cast

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.accesslog.v3 import als_pb2
from envoy.service.auth.v3 import external_auth_pb2
from envoy.service.ratelimit.v3 import rls_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.e2e.harness import free_port
from throttle.envoy_config import throttle_cluster
from tollway import envoy_contract as contract
from tollway.app.runner import GrpcServer
from tollway.component import GrpcService, service_name
from tollway.envoy_auth import PLAINTEXT_LINK
from tollway.envoy_resources import HEALTH_CHECK_TIMEOUT_SECONDS, grpc_service_cluster
from xds.resources import CLUSTER_TYPE, KEYMGR_CLUSTER, USAGE_CLUSTER, GatewayOptions, build_resources

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Switch:
    def __init__(self, on: bool) -> None:
        self.on = on

    def __call__(self) -> bool:
        return self.on


async def test_health_follows_readiness_then_the_live_check() -> None:
    server = GrpcServer(f"127.0.0.1:{free_port()}")
    ready, healthy = Switch(False), Switch(True)
    server.add(GrpcService("tollway.test.Checked", lambda _: None), ready, healthy)
    server.add(GrpcService("tollway.test.Plain", lambda _: None))
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)

            async def statuses() -> tuple[int, int, int]:
                answers = [
                    await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
                    for name in ("", "tollway.test.Checked", "tollway.test.Plain")
                ]
                return answers[0].status, answers[1].status, answers[2].status

            assert await statuses() == (NOT_SERVING, NOT_SERVING, SERVING)  # not loaded yet
            ready.on = True
            await server.update_health()
            assert await statuses() == (SERVING, SERVING, SERVING)
            healthy.on = False  # e.g. the throttle's counters gone in deny mode
            await server.update_health()
            assert await statuses() == (NOT_SERVING, NOT_SERVING, SERVING)
            assert not server.status("tollway.test.Checked")
            healthy.on = True
            await server.update_health()
            assert await statuses() == (SERVING, SERVING, SERVING)
            ready.on = False  # readiness is latched: a loaded view stays loaded
            await server.update_health()
            assert await statuses() == (SERVING, SERVING, SERVING)
    finally:
        await server.stop()


def test_health_service_names_are_the_services_full_names() -> None:
    assert service_name(external_auth_pb2, "Authorization") == contract.AUTHORIZATION_SERVICE
    assert service_name(rls_pb2, "RateLimitService") == contract.RATE_LIMIT_SERVICE
    assert service_name(als_pb2, "AccessLogService") == contract.ACCESS_LOG_SERVICE


def _checked_service(cluster: cluster_pb2.Cluster) -> str:
    (check,) = cluster.health_checks
    assert check.HasField("grpc_health_check")
    assert check.timeout.ToMilliseconds() == HEALTH_CHECK_TIMEOUT_SECONDS * 1000
    assert check.timeout.ToMilliseconds() < check.interval.ToMilliseconds()
    # Checked at the same pace whether or not the cluster carries traffic (Envoy's default is 60 s).
    assert check.no_traffic_interval == check.interval
    assert check.unhealthy_threshold.value >= 2 and check.healthy_threshold.value >= 1
    return str(check.grpc_health_check.service_name)


def test_every_tollway_cluster_checks_its_services_health() -> None:
    options = GatewayOptions(keymgr_endpoints=(("127.0.0.1", 1),), usage_endpoints=(("127.0.0.1", 2),))
    clusters = cast(dict[str, cluster_pb2.Cluster], build_resources([], options)[CLUSTER_TYPE])
    assert _checked_service(clusters[KEYMGR_CLUSTER]) == contract.AUTHORIZATION_SERVICE
    assert _checked_service(clusters[USAGE_CLUSTER]) == contract.ACCESS_LOG_SERVICE
    assert (
        _checked_service(throttle_cluster([("127.0.0.1", 3)], PLAINTEXT_LINK)) == contract.RATE_LIMIT_SERVICE
    )
    # A cluster built without a service to check has none (e.g. a plain gRPC upstream).
    assert not grpc_service_cluster("plain", [("127.0.0.1", 4)], link=PLAINTEXT_LINK).health_checks

"""A real Envoy pinging a Tollway gRPC server (the runner's GrpcServer, serving ADS) with a shortened
keepalive policy: pings every second, the server accepting them from every half second. Over ~8 s the
ADS connection stays the one it was, with no GOAWAY. The same Envoy against a server left at grpc's
defaults (pings without data at most every 5 minutes) is torn down within seconds: what an idle stack
did every ~2.6 minutes with Envoy's 30 s pings, and what this test would catch coming back."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from envoy.service.discovery.v3 import ads_pb2_grpc

from tests.e2e.harness import free_port
from tollway.app.runner import GrpcServer
from tollway.envoy import XDS_CLUSTER, EnvoyProcess, bootstrap_config
from tollway.keepalive import KeepalivePolicy
from xds.cache import SnapshotCache
from xds.resources import GatewayOptions, build_resources
from xds.server import AggregatedDiscoveryServicer

SHORT = KeepalivePolicy(
    envoy_interval=1.0,
    envoy_timeout=1.0,
    server_min_ping_interval=0.5,
    server_ping=2.0,
    server_ping_timeout=1.0,
)
WATCH_SECONDS = 8.0


class Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="keepalive-test", daemon=True)
        self.thread.start()

    def run(self, coroutine: object, timeout: float = 10.0) -> object:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)  # type: ignore[arg-type]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.close()


def xds_stats(envoy: EnvoyProcess) -> dict[str, int]:
    prefix = f"cluster.{XDS_CLUSTER}."
    stats: dict[str, int] = {}
    for line in envoy.admin_get(f"/stats?filter=^cluster\\.{XDS_CLUSTER}\\.upstream_cx").splitlines():
        name, _, value = line.partition(": ")
        if name.startswith(prefix) and value.strip().isdigit():
            stats[name.removeprefix(prefix)] = int(value)
    return stats


def watch(loop: Loop, tmp_path: Path, agreed: bool) -> tuple[dict[str, int], str]:
    """Envoy on SHORT against an ADS server with the agreed policy or grpc's defaults; its xds
    cluster's connection stats after WATCH_SECONDS, and its log."""
    cache = SnapshotCache()
    grpc_port = free_port()
    options = GatewayOptions(
        listener_host="127.0.0.1",
        listener_port=free_port(),
        keymgr_endpoints=(("127.0.0.1", grpc_port),),
        usage_endpoints=(("127.0.0.1", grpc_port),),
    )
    cache.set_snapshot(build_resources([], options))

    async def start() -> GrpcServer | grpc.aio.Server:
        ads = AggregatedDiscoveryServicer(cache, {"keepalive"})
        if agreed:
            server = GrpcServer(f"127.0.0.1:{grpc_port}", keepalive=SHORT)
            ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(ads, server.server)
            await server.start()
            return server
        plain = grpc.aio.server()
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(ads, plain)
        plain.add_insecure_port(f"127.0.0.1:{grpc_port}")
        await plain.start()
        return plain

    server = loop.run(start())
    envoy = EnvoyProcess(
        bootstrap_config("keepalive", "tollway", "127.0.0.1", grpc_port, "127.0.0.1", 0, keepalive=SHORT),
        work_dir=tmp_path / ("agreed" if agreed else "defaults"),
        concurrency=1,
        log_level="info",
    )
    try:
        envoy.start()
        envoy.wait_ready(20)
        time.sleep(WATCH_SECONDS)
        stats = xds_stats(envoy)
    finally:
        envoy.stop()
        loop.run(server.stop(0) if isinstance(server, grpc.aio.Server) else server.stop())
    return stats, envoy.log_tail(100_000)


def test_agreed_keepalive_keeps_the_ads_connection(loop: Loop, tmp_path: Path) -> None:
    stats, log = watch(loop, tmp_path, agreed=True)
    assert stats["upstream_cx_total"] == 1, stats
    assert stats.get("upstream_cx_destroy_remote", 0) == 0, stats
    assert stats.get("upstream_cx_destroy_remote_with_active_rq", 0) == 0, stats
    assert "too_many_pings" not in log.lower() and "too many pings" not in log.lower()


def test_grpc_defaults_would_tear_it_down(loop: Loop, tmp_path: Path) -> None:
    stats, _log = watch(loop, tmp_path, agreed=False)
    assert stats["upstream_cx_total"] > 1 or stats.get("upstream_cx_destroy_remote", 0) > 0, stats

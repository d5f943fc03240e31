"""Fixtures for the xds tests (helpers in xds_harness.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import grpc
import pytest
from envoy.service.accesslog.v3 import als_pb2_grpc
from envoy.service.auth.v3 import external_auth_pb2_grpc
from envoy.service.discovery.v3 import ads_pb2_grpc
from xds_harness import (
    AllowAllAuthorization,
    EchoHandler,
    Gateway,
    LoopThread,
    RecordingAccessLog,
    free_port,
)

from tollway.envoy import EnvoyProcess, bootstrap_config
from xds.cache import SnapshotCache
from xds.server import AggregatedDiscoveryServicer


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    loop = LoopThread()
    cache = SnapshotCache()
    ads = AggregatedDiscoveryServicer(cache, {"xds-test-node"})
    authz = AllowAllAuthorization()
    access_log = RecordingAccessLog()

    async def start_grpc() -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server()
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(ads, server)
        external_auth_pb2_grpc.add_AuthorizationServicer_to_server(authz, server)
        als_pb2_grpc.add_AccessLogServiceServicer_to_server(access_log, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, grpc_port = loop.run(start_grpc())
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    upstream.daemon_threads = True
    threading.Thread(target=upstream.serve_forever, name="xds-test-upstream", daemon=True).start()

    node_id = "xds-test-node"
    envoy = EnvoyProcess(
        bootstrap_config(
            node_id=node_id,
            node_cluster="xds-test",
            ads_host="127.0.0.1",
            ads_port=grpc_port,
            admin_host="127.0.0.1",
            admin_port=0,
        ),
        work_dir=tmp_path_factory.mktemp("envoy"),
        concurrency=1,
        log_level="info",
    )
    gateway = Gateway(
        loop=loop,
        cache=cache,
        ads=ads,
        authz=authz,
        access_log=access_log,
        envoy=envoy,
        grpc_port=grpc_port,
        listener_port=free_port(),
        upstream_port=upstream.server_address[1],
        node_id=node_id,
    )
    gateway.publish([gateway.api("weather", "/weather/v1", "/base")])
    try:
        envoy.start()
        envoy.wait_ready(20)
        yield gateway
    finally:
        envoy.stop()
        upstream.shutdown()
        upstream.server_close()
        loop.run(server.stop(grace=None))
        loop.close()

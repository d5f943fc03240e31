"""Helpers for the xds tests: a real Envoy fed by Tollway's ADS servicer, an echoing HTTP upstream,
and test doubles for the services Envoy calls besides ADS.

The Authorization and AccessLogService servicers here are test doubles confined to tests/xds: they
allow everything / record everything so these tests exercise only xDS. The real keymgr and usage
servicers are other components' and are tested there.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, TypeVar

from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from google.rpc import status_pb2

from tests.support import free_port as free_port  # re-exported for the xds tests
from tollway.catalog.view import PublishedApi
from tollway.envoy import EnvoyProcess
from xds.cache import SnapshotCache
from xds.resources import GatewayOptions, Resources, build_resources
from xds.server import AggregatedDiscoveryServicer

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.02) -> T:
    """Polls until predicate() is truthy and returns it; fails the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout} s (last value {value!r})")
        time.sleep(interval)


class LoopThread:
    """An asyncio loop on a background thread, for grpc.aio servers used from sync tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="xds-test-loop", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


class AllowAllAuthorization(external_auth_pb2_grpc.AuthorizationServicer):
    """Test double for keymgr: allows every request and records what Envoy asked."""

    def __init__(self) -> None:
        self.checks: list[external_auth_pb2.CheckRequest] = []

    async def Check(
        self, request: external_auth_pb2.CheckRequest, context: Any
    ) -> external_auth_pb2.CheckResponse:
        self.checks.append(request)
        return external_auth_pb2.CheckResponse(
            status=status_pb2.Status(code=0), ok_response=external_auth_pb2.OkHttpResponse()
        )

    def paths_checked(self) -> list[str]:
        return [check.attributes.request.http.path for check in self.checks]


class RecordingAccessLog(als_pb2_grpc.AccessLogServiceServicer):
    """Test double for usage: records every access-log message Envoy streams."""

    def __init__(self) -> None:
        self.messages: list[als_pb2.StreamAccessLogsMessage] = []

    async def StreamAccessLogs(self, request_iterator: Any, context: Any) -> als_pb2.StreamAccessLogsResponse:
        async for message in request_iterator:
            self.messages.append(message)
        return als_pb2.StreamAccessLogsResponse()


class EchoHandler(BaseHTTPRequestHandler):
    """Answers with the path and headers it received, as JSON."""

    def do_GET(self) -> None:
        body = json.dumps({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}})
        data = body.encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http_get(port: int, path: str, timeout: float = 5.0, headers: dict[str, str] | None = None) -> Reply:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return Reply(response.status, headers, response.read())
    finally:
        connection.close()


@dataclass
class Gateway:
    """A running Envoy on Tollway's ADS, with handles on everything around it."""

    loop: LoopThread
    cache: SnapshotCache
    ads: AggregatedDiscoveryServicer
    authz: AllowAllAuthorization
    access_log: RecordingAccessLog
    envoy: EnvoyProcess
    grpc_port: int
    listener_port: int
    upstream_port: int
    node_id: str
    options: GatewayOptions = field(init=False)

    def __post_init__(self) -> None:
        self.options = GatewayOptions(
            listener_host="127.0.0.1",
            listener_port=self.listener_port,
            keymgr_endpoints=(("127.0.0.1", self.grpc_port),),
            usage_endpoints=(("127.0.0.1", self.grpc_port),),
        )

    def api(self, api_id: str, context_path: str, upstream_path: str = "") -> PublishedApi:
        return PublishedApi(
            id=api_id,
            name=f"name-{api_id}",
            version="v1",
            context_path=context_path,
            upstream_urls=(f"http://127.0.0.1:{self.upstream_port}{upstream_path}",),
        )

    def resources(self, apis: list[PublishedApi], options: GatewayOptions | None = None) -> Resources:
        return build_resources(apis, options or self.options)

    def publish(self, apis: list[PublishedApi], options: GatewayOptions | None = None) -> None:
        self.cache.set_snapshot(self.resources(apis, options))

    def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        return http_get(self.listener_port, path, headers=headers)

    def config_dump(self) -> dict[str, Any]:
        return json.loads(self.envoy.admin_get("/config_dump"))

    def dump_section(self, name: str) -> dict[str, Any]:
        """One section of Envoy's /config_dump, by its message name (e.g. "RoutesConfigDump")."""
        for section in self.config_dump()["configs"]:
            if section["@type"].rsplit(".", 1)[-1] == name:
                return section
        raise AssertionError(f"config_dump has no {name}")

    def route_versions(self) -> list[str]:
        """version_info of each route configuration Envoy runs."""
        return [
            entry["version_info"] for entry in self.dump_section("RoutesConfigDump")["dynamic_route_configs"]
        ]

    def wait_accepted(self, type_url: str, version: str, timeout: float = 5.0) -> None:
        def accepted() -> bool:
            node = self.ads.node(self.node_id)
            return node is not None and node.accepted_versions.get(type_url) == version

        wait_until(accepted, timeout)

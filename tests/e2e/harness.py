"""A whole Tollway stack for end-to-end tests: the services in a background event loop, a real Envoy
started from a generated bootstrap (authenticated to the services as the settings say: by default
mTLS with certificates generated into the stack's directory), and an echo upstream, all on ephemeral
ports."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc

from tests.support import free_port, free_port_run
from tollway.app.demo import start_echo_server
from tollway.app.runner import TollwayProcess
from tollway.app.workers import WorkerGroup
from tollway.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from tollway.envoy import EnvoyProcess, bootstrap_config
from tollway.settings import Settings
from tollway.store.v1 import store_pb2, store_pb2_grpc

T = TypeVar("T")


class LogCapture(logging.Handler):
    """Keeps every formatted log record of the process, to prove no secret reaches a log line."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Stack:
    settings: Settings
    process: TollwayProcess
    envoy: EnvoyProcess
    loop: asyncio.AbstractEventLoop
    upstream_url: str
    logs: LogCapture
    _channel: grpc.Channel = field(init=False)
    # Worker 0 is `process`; the others are child processes (settings.workers > 1).
    group: WorkerGroup = field(init=False)

    def __post_init__(self) -> None:
        self._channel = grpc.insecure_channel(self.settings.admin_addr)
        self.catalog = catalog_pb2_grpc.CatalogServiceStub(self._channel)
        self.store = store_pb2_grpc.StoreServiceStub(self._channel)
        self.auth = (("authorization", f"Bearer {self.settings.admin_token}"),)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Runs a coroutine on the services' event loop (to reach their in-process state)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, method: Callable[..., T], request: Any) -> T:
        return method(request, metadata=self.auth, timeout=10)

    def get(self, path: str, headers: dict[str, str] | None = None) -> Response:
        url = f"http://{self.settings.gateway_addr}{path}"
        request = urllib.request.Request(url, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return Response(
                    response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
                )
        except urllib.error.HTTPError as error:
            return Response(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())

    def wait_for_status(
        self, path: str, status: int, headers: dict[str, str] | None = None, timeout: float = 5.0
    ) -> tuple[Response, float]:
        """Polls until the gateway answers `status`; returns the response and the seconds it took."""
        start = time.monotonic()
        response = self.get(path, headers)
        while response.status != status and time.monotonic() - start < timeout:
            time.sleep(0.02)
            response = self.get(path, headers)
        return response, time.monotonic() - start

    # --- catalog/store shortcuts through the real admin API -------------------------------------------

    def create_plan(self, name: str, **fields: Any) -> catalog_pb2.Plan:
        plan = catalog_pb2.Plan(name=name, **fields)
        return self.call(self.catalog.CreatePlan, catalog_pb2.CreatePlanRequest(plan=plan)).plan

    def create_api(
        self, name: str, context_path: str, plan_ids: list[str], publish: bool = True
    ) -> catalog_pb2.Api:
        api = catalog_pb2.Api(
            name=name,
            version="v1",
            context_path=context_path,
            upstream_urls=[self.upstream_url],
            plan_ids=plan_ids,
        )
        created = self.call(self.catalog.CreateApi, catalog_pb2.CreateApiRequest(api=api)).api
        if publish:
            created = self.call(self.catalog.PublishApi, catalog_pb2.PublishApiRequest(id=created.id)).api
        return created

    def create_application(self, name: str) -> store_pb2.Application:
        application = store_pb2.Application(name=name, owner="e2e@tollway.test")
        request = store_pb2.CreateApplicationRequest(application=application)
        return self.call(self.store.CreateApplication, request).application

    def subscribe(self, application_id: str, api_id: str, plan_id: str) -> store_pb2.Subscription:
        request = store_pb2.CreateSubscriptionRequest(
            application_id=application_id, api_id=api_id, plan_id=plan_id
        )
        return self.call(self.store.CreateSubscription, request).subscription

    def issue_key(self, application_id: str, **fields: Any) -> store_pb2.CreateApiKeyResponse:
        request = store_pb2.CreateApiKeyRequest(application_id=application_id, name="e2e", **fields)
        return self.call(self.store.CreateApiKey, request)

    def close(self) -> None:
        self._channel.close()


def start_stack(work_dir: Path, **overrides: Any) -> Stack:
    """`overrides` are Settings fields; with `workers` > 1 the workers beyond the first are child
    processes (tollway/app/workers.py) on the ports after the gRPC port."""
    admin_port, gateway_port, envoy_admin_port, upstream_port = (free_port() for _ in range(4))
    grpc_port = free_port_run(
        overrides.get("workers", 1), {admin_port, gateway_port, envoy_admin_port, upstream_port}
    )
    fields: dict[str, Any] = {
        "data_dir": work_dir,
        "database_url": f"sqlite:///{work_dir / 'tollway.db'}",
        "grpc_addr": f"127.0.0.1:{grpc_port}",
        "admin_addr": f"127.0.0.1:{admin_port}",
        "gateway_addr": f"127.0.0.1:{gateway_port}",
        "envoy_admin_addr": f"127.0.0.1:{envoy_admin_port}",
        "change_poll_seconds": 0.1,
        # The node id this harness's Envoy gives itself: the one ADS serves.
        "envoy_node_id": "e2e",
        "portal_addr": f"127.0.0.1:{free_port()}",
        "portal_grpc_addr": f"127.0.0.1:{free_port()}",
    }
    settings = Settings(**{**fields, **overrides}).resolved()
    logs = LogCapture()
    logging.getLogger().addHandler(logs)
    logging.getLogger().setLevel(logging.INFO)
    for component in ("tollway", "keymgr", "xds", "throttle", "usage", "billing"):
        # The most talkative Tollway can be, to prove no secret reaches a log line at any level.
        logging.getLogger(component).setLevel(logging.DEBUG)

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="tollway-services", daemon=True).start()
    group = WorkerGroup(settings)
    asyncio.run_coroutine_threadsafe(group.start(), loop).result(60)
    process = group.main

    upstream = start_echo_server("127.0.0.1", upstream_port)
    envoy = EnvoyProcess(
        bootstrap_config(
            node_id=settings.envoy_node_id,
            node_cluster="tollway-e2e",
            ads_host="127.0.0.1",
            ads_port=grpc_port,
            admin_host="127.0.0.1",
            admin_port=envoy_admin_port,
            # Envoy authenticates as the settings say (the default: mTLS, certificates in work_dir).
            link=settings.envoy_link,
        ),
        work_dir=work_dir / "envoy",
        concurrency=1,
    )
    envoy.start()
    envoy.wait_ready(30.0)
    stack = Stack(settings, process, envoy, loop, f"http://127.0.0.1:{upstream_port}", logs)
    stack.upstream_server = upstream  # type: ignore[attr-defined]
    stack.group = group
    return stack


def stop_stack(stack: Stack) -> None:
    stack.close()
    stack.envoy.stop()
    stack.upstream_server.shutdown()  # type: ignore[attr-defined]
    asyncio.run_coroutine_threadsafe(stack.group.stop(), stack.loop).result(60)
    stack.loop.call_soon_threadsafe(stack.loop.stop)
    logging.getLogger().removeHandler(stack.logs)

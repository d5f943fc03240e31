"""Helpers for usage tests through a real Envoy: an upstream that answers any status, load with the
request ids the gateway returned, usage queries through the real admin API."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from tests.e2e.harness import Stack
from tollway.catalog.v1 import catalog_pb2
from tollway.usage.v1 import usage_pb2, usage_pb2_grpc


class StatusHandler(BaseHTTPRequestHandler):
    """GET /status/503 answers 503; anything else 200."""

    def do_GET(self) -> None:
        parts = self.path.split("/")
        code = int(parts[-1]) if len(parts) >= 2 and parts[-2] == "status" and parts[-1].isdigit() else 200
        body = b'{"ok": true}'
        self.send_response(code)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def start_status_upstream() -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), StatusHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def create_api(stack: Stack, name: str, context: str, upstream: str, plan_ids: list[str]) -> catalog_pb2.Api:
    api = catalog_pb2.Api(
        name=name, version="v1", context_path=context, upstream_urls=[upstream], plan_ids=plan_ids
    )
    created = stack.call(stack.catalog.CreateApi, catalog_pb2.CreateApiRequest(api=api)).api
    return stack.call(stack.catalog.PublishApi, catalog_pb2.PublishApiRequest(id=created.id)).api


def ts(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def today() -> tuple[Timestamp, Timestamp]:
    """A day-aligned range around now (yesterday..tomorrow), so day windows answer."""
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    return ts(start), ts(start + timedelta(days=3))


def usage_stub(stack: Stack) -> usage_pb2_grpc.UsageServiceStub:
    return usage_pb2_grpc.UsageServiceStub(stack._channel)


def totals_by(stack: Stack, api_id: str, *dimensions: int) -> dict[tuple[str, ...], usage_pb2.UsageCounts]:
    start, end = today()
    request = usage_pb2.GetUsageTotalsRequest(
        start_time=start, end_time=end, group_by=list(dimensions), filter=usage_pb2.UsageFilter(api_id=api_id)
    )
    answer = stack.call(usage_stub(stack).GetUsageTotals, request)
    names = {
        usage_pb2.DIMENSION_SUBSCRIPTION: "subscription_id",
        usage_pb2.DIMENSION_KEY: "key_id",
        usage_pb2.DIMENSION_API: "api_id",
    }
    return {tuple(getattr(g, names[d]) for d in dimensions): g.counts for g in answer.groups}


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.1) -> Any:
    """Polls until predicate() is truthy (Envoy flushes its access-log buffer every second)."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


def observed(responses: list[Any]) -> Counter[int]:
    return Counter(r.status for r in responses)


def subscription_totals(stack: Stack, subscription_id: str, requests: int) -> usage_pb2.UsageCounts:
    """A subscription's usage totals around today, once `requests` of its requests were counted (or
    what was counted when that did not happen in time)."""
    start, end = today()
    request = usage_pb2.GetUsageTotalsRequest(
        start_time=start, end_time=end, filter=usage_pb2.UsageFilter(subscription_id=subscription_id)
    )

    def counts() -> usage_pb2.UsageCounts:
        groups = stack.call(usage_stub(stack).GetUsageTotals, request).groups
        return groups[0].counts if groups else usage_pb2.UsageCounts()

    wait_until(lambda: counts().requests >= requests)
    return counts()

"""kill -9 of one of two usage replicas (workers) while requests flow through a real Envoy.

Envoy sends every access-log entry to both workers (TOLLWAY_USAGE_COPIES=2: one access logger per
worker), and usage counts each (Envoy node, request id) once. Envoy's gRPC access logger never
resends what a dead stream had in flight, so the killed worker's copy of the last entries is gone;
the other worker's copy is not. Guarantee checked here: every request that reached a Tollway API
(200 or 429, i.e. billable or throttled) is counted exactly once, and completeness (Envoy's
logs_written divided by the copies, against what usage counted) misses exactly the entries usage
does not meter (no API). A request whose Check was in
flight to the killed worker gets Envoy's 503 (ext_authz failed, fail closed): it carries no API and
is not metered, as with any keymgr outage."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Stack, start_stack, stop_stack
from tests.e2e.test_workers import _client, warm_up
from tests.throttle.throttle_fixtures import SHARED_REDIS_URL
from tests.usage.usage_stack import subscription_totals, today, usage_stub, wait_until
from tollway.usage.v1 import usage_pb2

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    started = start_stack(
        Path(tmp_path_factory.mktemp("usage-kill")),
        workers=2,
        ratelimit_store="redis",
        redis_url=SHARED_REDIS_URL,
        redis_timeout_ms=1000,
        usage_sample_seconds=0.5,
    )
    try:
        yield started
    finally:
        stop_stack(started)


def _load(stack: Stack, path: str, key: str, stop: threading.Event, seen: Counter[int]) -> None:
    lock = threading.Lock()

    def client() -> None:
        while not stop.is_set():
            status = stack.get(path, {"x-api-key": key}).status
            with lock:
                seen[status] += 1

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_killing_one_usage_worker_loses_no_request(stack: Stack) -> None:
    assert stack.settings.effective_usage_copies == 2
    path, key, subscription = _client(stack, requests_per_minute=1_000_000)
    seen = warm_up(stack, path, key)
    stop = threading.Event()
    load_seen: Counter[int] = Counter()
    load = threading.Thread(target=_load, args=(stack, path, key, stop, load_seen))
    load.start()
    time.sleep(1.5)
    before_kill = sum(load_seen.values())
    victim = stack.group.children[1]
    os.kill(victim.pid, signal.SIGKILL)
    time.sleep(2.5)
    stop.set()
    load.join()
    seen.update(load_seen)
    assert before_kill > 0 and sum(load_seen.values()) > before_kill  # traffic flowed across the kill
    # The supervisor started the killed worker again.
    assert wait_until(lambda: stack.group.restarts >= 1)
    admitted = seen[200] + seen[429]
    counts = subscription_totals(stack, subscription, admitted)
    assert (counts.requests, counts.success, counts.throttled) == (admitted, seen[200], seen[429]), seen

    # Completeness: Envoy's logs_written / copies against what usage counted for the node.
    def node() -> usage_pb2.NodeCompleteness | None:
        start, end = today()
        answer = stack.call(
            usage_stub(stack).GetCompleteness,
            usage_pb2.GetCompletenessRequest(start_time=start, end_time=end),
        )
        return next((n for n in answer.nodes if n.node_id == "e2e"), None)

    # Entries usage skips (no API: Envoy's 404 before the route arrived, its 503 for a Check that was
    # in flight to the killed worker) are the only difference; nothing else is missing.
    unmetered = seen[404] + seen[503]
    settled = wait_until(
        lambda: (n := node()) is not None and n.sampled and n.logs_written - n.received == unmetered
    )
    report = node()
    assert settled and report is not None, (report, seen)
    assert report.received == sum(seen.values()) - unmetered

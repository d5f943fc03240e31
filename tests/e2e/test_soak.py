"""Soak: a whole stack through a real Envoy, left idle and under light traffic in turns, then checked for
what breaks long-lived gRPC connections: no ADS, ext_authz (keymgr), ratelimit (throttle) or access-log
(usage) connection of Envoy's was closed or reset by either side, Envoy's config stream never dropped,
no call failed, no access-log entry dropped, and usage counted every request sent.

`make test` runs it for SOAK_SECONDS=25 (the same checks, idle stretches of ~10 s). `make soak` runs it
for ten minutes (SOAK_SECONDS=600): idle stretches of 4 and 3 minutes, longer than the ~2.6 minutes after
which grpc's default ping policy used to tear idle connections down (GOAWAY too_many_pings)."""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Stack, start_stack, stop_stack
from tests.e2e.test_workers import _client, warm_up
from tests.usage.usage_stack import subscription_totals, today, usage_stub, wait_until
from tollway.envoy import XDS_CLUSTER
from tollway.usage.v1 import usage_pb2

pytestmark = pytest.mark.e2e

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "25"))
# (what, share of SOAK_SECONDS): idle stretches between light traffic.
PHASES = (("traffic", 0.1), ("idle", 0.4), ("traffic", 0.1), ("idle", 0.3), ("traffic", 0.1))
REQUEST_EVERY_SECONDS = 0.5
# Per Tollway cluster: any of these moving means a connection was lost, refused or reset.
BROKEN_CONNECTION_STATS = (
    "upstream_cx_total",  # a new connection: the one before it went away
    "upstream_cx_destroy_remote",
    "upstream_cx_destroy_remote_with_active_rq",
    "upstream_cx_destroy_local_with_active_rq",
    "upstream_cx_connect_fail",
    "upstream_rq_rx_reset",
    "upstream_rq_tx_reset",
    "upstream_rq_timeout",
    "upstream_cx_protocol_error",
)
# Envoy-wide: a failed Check or ShouldRateLimit, an access-log entry given up.
FAILED_CALL_STATS = (
    "http.tollway_http.ext_authz.error",
    "http.tollway_http.ext_authz.failure_mode_allowed",
    "cluster.tollway_throttle.ratelimit.error",
    "cluster.tollway_throttle.ratelimit.failure_mode_allowed",
    "access_logs.grpc_access_log.logs_dropped",
)
STREAM_CLOSED = re.compile(r"gRPC config stream to \S+ closed|too.many.pings", re.IGNORECASE)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Generous call deadlines: this is about connections staying up, not latency; a Check slowed past
    # Envoy's 250 ms on a loaded machine is not a reset (and would fail the run for the wrong reason).
    started = start_stack(
        Path(tmp_path_factory.mktemp("soak")),
        usage_sample_seconds=1.0,
        authz_timeout_ms=5000,
        ratelimit_timeout_ms=5000,
    )
    try:
        yield started
    finally:
        stop_stack(started)


def envoy_stats(stack: Stack) -> dict[str, int]:
    stats: dict[str, int] = {}
    for line in stack.envoy.admin_get("/stats").splitlines():
        name, _, value = line.partition(": ")
        if value.strip().isdigit():
            stats[name] = int(value)
    return stats


def tollway_clusters(stats: dict[str, int]) -> list[str]:
    names = {name.split(".")[1] for name in stats if name.startswith("cluster.tollway_")}
    return sorted(names)


def watched(stats: dict[str, int]) -> dict[str, int]:
    chosen = {
        f"cluster.{cluster}.{stat}": stats.get(f"cluster.{cluster}.{stat}", 0)
        for cluster in tollway_clusters(stats)
        for stat in BROKEN_CONNECTION_STATS
    }
    chosen.update({name: stats.get(name, 0) for name in FAILED_CALL_STATS})
    return chosen


def envoy_log(stack: Stack) -> str:
    return stack.envoy.log_path.read_text(errors="replace") if stack.envoy.log_path.exists() else ""


@pytest.mark.timeout(SOAK_SECONDS + 300)
def test_idle_and_light_traffic_break_no_stream(stack: Stack, tmp_path: Path) -> None:
    path, key, subscription = _client(stack, requests_per_minute=1_000_000)
    seen = warm_up(stack, path, key)

    def node() -> usage_pb2.NodeCompleteness | None:
        start, end = today()
        answer = stack.call(
            usage_stub(stack).GetCompleteness,
            usage_pb2.GetCompletenessRequest(start_time=start, end_time=end),
        )
        return next((n for n in answer.nodes if n.node_id == stack.settings.envoy_node_id), None)

    def settled() -> bool:
        """Every entry Envoy wrote so far reached usage (its access-log connection is open by then)."""
        report = node()
        return report is not None and report.sampled and report.logs_written == report.accounted > 0

    # The baseline once warm-up's access-log entries were sent (Envoy flushes them within a second).
    wait_until(settled, timeout=30)
    before = envoy_stats(stack)
    clusters = tollway_clusters(before)
    assert {XDS_CLUSTER, "tollway_keymgr", "tollway_throttle", "tollway_usage"} <= set(clusters), clusters
    closed_before = len(STREAM_CLOSED.findall(envoy_log(stack)))

    started = time.monotonic()
    sent: Counter[int] = Counter()
    for what, share in PHASES:
        phase_end = time.monotonic() + share * SOAK_SECONDS
        while time.monotonic() < phase_end:
            if what == "traffic":
                sent[stack.get(path, {"x-api-key": key}).status] += 1
            time.sleep(REQUEST_EVERY_SECONDS if what == "traffic" else min(1.0, phase_end - time.monotonic()))
    soaked = time.monotonic() - started

    after = envoy_stats(stack)
    moved = {name: after_value - watched(before)[name] for name, after_value in watched(after).items()}
    moved = {name: delta for name, delta in moved.items() if delta}
    closed = STREAM_CLOSED.findall(envoy_log(stack))[closed_before:]
    # Warm-up's 401s (the new key not yet seen by keymgr) carry no subscription: only 200s are its usage.
    seen.update(sent)
    counts = subscription_totals(stack, subscription, seen[200])

    wait_until(settled, timeout=30)
    report = node()
    figures = {
        "soak_seconds": round(soaked, 1),
        "requests_sent": sum(sent.values()),
        "statuses": dict(seen),
        "usage_counted": counts.requests,
        "completeness": report.completeness if report else None,
        "envoy_logs_written": report.logs_written if report else None,
        "tollway_clusters": clusters,
        "connections": {c: after.get(f"cluster.{c}.upstream_cx_total", 0) for c in clusters},
        "watched_stats_moved": moved,
        "stream_closed_lines": closed,
        "ads_connected": after.get("control_plane.connected_state"),
    }
    print("soak figures:", json.dumps(figures))
    assert set(sent) == {200}, sent
    assert sum(sent.values()) > 0
    assert not moved, moved
    assert not closed, closed
    assert after.get("control_plane.connected_state") == 1
    assert (counts.requests, counts.success) == (seen[200], seen[200]), figures
    assert report is not None and report.logs_dropped == 0 and report.completeness == 1.0, figures

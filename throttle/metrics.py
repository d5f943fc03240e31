"""Throttle metrics, exported through the process's registry (tollway/metrics.py, prometheus-client).

tollway_throttle_decisions_total{plan,result}   result: ok, over_limit, overage, shadow_over_limit,
                                                  store_unavailable_allowed, store_unavailable_denied,
                                                  quota_rebuilding, unknown
tollway_throttle_rls_requests_total{outcome,window}  ShouldRateLimit answers: outcome ok, over_limit,
                                                  invalid, unavailable, error; window: the window that
                                                  refused (second, minute, hour, day, period) or none
tollway_throttle_rls_seconds (histogram)        ShouldRateLimit latency in the servicer
tollway_throttle_quota_rebuilds_total{result}   lost billing-period counters rebuilt from usage:
                                                  started, completed, failed (retried), lost_again
tollway_throttle_redis_errors_total{error}
tollway_throttle_redis_seconds (histogram)      latency of successful Redis calls
tollway_throttle_redis_batch_requests (histogram) requests per script call (one call per batch on a
                                                  standalone Redis, one per slot of a batch on a cluster)
tollway_throttle_redis_node_seconds{node} (histogram), tollway_throttle_redis_node_errors_total{node,error}
                                                  Redis Cluster: latency and errors of each master
tollway_throttle_compensations_total{result}    Redis Cluster: requests under a shared limit in another
                                                  slot refused after an earlier step counted them, whose
                                                  increments were taken back (ok) or could not be (failed)

Per-decision counts stay plain ints (one dict increment on the hot path), exported at scrape time;
the histograms are the library's. Plans are labelled by the ids the index knows (made-up ids never
become labels), nodes by the addresses the cluster reports, errors by exception class names.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from prometheus_client import Histogram

from tollway.metrics import (
    LATENCY_BUCKETS,
    FunctionCollector,
    LoopHistogram,
    Metric,
    component_registry,
    counter_family,
)

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ThrottleMetrics:
    def __init__(self) -> None:
        self.registry = component_registry()
        self.decisions: Counter[tuple[str, str]] = Counter()
        self.rls: Counter[tuple[str, str]] = Counter()
        self.redis_errors: Counter[str] = Counter()
        self.quota_rebuilds: Counter[str] = Counter()
        self.node_errors: Counter[tuple[str, str]] = Counter()
        self.compensations: Counter[str] = Counter()
        self.rls_seconds = LoopHistogram(
            "tollway_throttle_rls_seconds",
            "ShouldRateLimit latency in the servicer.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.redis_seconds = LoopHistogram(
            "tollway_throttle_redis_seconds",
            "Latency of successful Redis calls.",
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.batch_requests = LoopHistogram(
            "tollway_throttle_redis_batch_requests",
            "Requests per Redis script call.",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        # Keyed by the nodes the cluster reports (host:port), never by anything a caller sends.
        self.node_latency = Histogram(
            "tollway_throttle_redis_node_seconds",
            "Latency of successful calls, per cluster node.",
            ["node"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(FunctionCollector(self._collect))

    def decision(self, plan_id: str, result: str) -> None:
        self.decisions[(plan_id, result)] += 1

    def rls_answer(self, outcome: str, window: str, seconds: float) -> None:
        self.rls[(outcome, window)] += 1
        self.rls_seconds.observe(seconds)

    def quota_rebuild(self, result: str) -> None:
        self.quota_rebuilds[result] += 1

    def redis_error(self, error: str) -> None:
        self.redis_errors[error] += 1

    def redis_latency(self, seconds: float) -> None:
        self.redis_seconds.observe(seconds)

    def batch_size(self, requests: int) -> None:
        self.batch_requests.observe(requests)

    def redis_node_latency(self, node: str, seconds: float) -> None:
        self.node_latency.labels(node).observe(seconds)

    def redis_node_error(self, node: str, error: str) -> None:
        self.node_errors[(node, error)] += 1

    def compensation(self, result: str) -> None:
        self.compensations[result] += 1

    def _collect(self) -> Iterable[Metric]:
        yield counter_family(
            "tollway_throttle_decisions_total",
            "ShouldRateLimit decisions by plan and result.",
            ("plan", "result"),
            self.decisions,
        )
        yield counter_family(
            "tollway_throttle_rls_requests_total",
            "ShouldRateLimit answers by outcome and the window that refused (none when admitted).",
            ("outcome", "window"),
            self.rls,
        )
        yield counter_family(
            "tollway_throttle_quota_rebuilds_total",
            "Lost billing-period counters rebuilt from usage.",
            ("result",),
            {(k,): v for k, v in self.quota_rebuilds.items()},
        )
        yield counter_family(
            "tollway_throttle_redis_errors_total",
            "Redis calls that failed or were skipped.",
            ("error",),
            {(k,): v for k, v in self.redis_errors.items()},
        )
        yield counter_family(
            "tollway_throttle_redis_node_errors_total",
            "Failed calls, per cluster node.",
            ("node", "error"),
            self.node_errors,
        )
        yield counter_family(
            "tollway_throttle_compensations_total",
            "Shared-limit steps taken back after a refusal.",
            ("result",),
            {(k,): v for k, v in self.compensations.items()},
        )

    def render(self) -> str:
        """This component's families alone, in the text format (tests; the process serves them all)."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()

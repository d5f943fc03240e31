"""Throttle metrics in the Prometheus text format (no client library: a few counters and one histogram).

tollway_throttle_decisions_total{plan,result}   result: ok, over_limit, overage, shadow_over_limit,
                                                  store_unavailable_allowed, store_unavailable_denied,
                                                  quota_rebuilding, unknown
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

Registered with the process's metrics endpoint (tollway.metrics, TOLLWAY_METRICS_ADDR).
"""

from __future__ import annotations

import bisect
from collections import Counter

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def render(self, name: str, labels: str = "") -> list[str]:
        lines = []
        cumulative = 0
        prefix = f"{labels}," if labels else ""
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            cumulative += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            lines.append(f'{name}_bucket{{{prefix}le="{le}"}} {cumulative}')
        suffix = f"{{{labels}}}" if labels else ""
        lines.append(f"{name}_sum{suffix} {self.sum}")
        lines.append(f"{name}_count{suffix} {self.count}")
        return lines


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class ThrottleMetrics:
    def __init__(self) -> None:
        self.decisions: Counter[tuple[str, str]] = Counter()
        self.redis_errors: Counter[str] = Counter()
        self.quota_rebuilds: Counter[str] = Counter()
        self._bucket_counts = [0] * (len(_BUCKETS) + 1)
        self._latency_sum = 0.0
        self._latency_count = 0
        self.batch_requests = _Histogram(_BATCH_BUCKETS)
        # Keyed by the nodes the cluster reports (host:port), never by anything a caller sends.
        self.node_latency: dict[str, _Histogram] = {}
        self.node_errors: Counter[tuple[str, str]] = Counter()
        self.compensations: Counter[str] = Counter()

    def decision(self, plan_id: str, result: str) -> None:
        self.decisions[(plan_id, result)] += 1

    def quota_rebuild(self, result: str) -> None:
        self.quota_rebuilds[result] += 1

    def redis_error(self, error: str) -> None:
        self.redis_errors[error] += 1

    def redis_latency(self, seconds: float) -> None:
        self._bucket_counts[bisect.bisect_left(_BUCKETS, seconds)] += 1
        self._latency_sum += seconds
        self._latency_count += 1

    def batch_size(self, requests: int) -> None:
        self.batch_requests.observe(requests)

    def redis_node_latency(self, node: str, seconds: float) -> None:
        histogram = self.node_latency.get(node)
        if histogram is None:
            histogram = self.node_latency[node] = _Histogram(_BUCKETS)
        histogram.observe(seconds)

    def redis_node_error(self, node: str, error: str) -> None:
        self.node_errors[(node, error)] += 1

    def compensation(self, result: str) -> None:
        self.compensations[result] += 1

    def render(self) -> str:
        lines = [
            "# HELP tollway_throttle_decisions_total ShouldRateLimit decisions by plan and result.",
            "# TYPE tollway_throttle_decisions_total counter",
        ]
        for (plan, result), value in sorted(self.decisions.items()):
            labels = f'plan="{_escape(plan)}",result="{_escape(result)}"'
            lines.append(f"tollway_throttle_decisions_total{{{labels}}} {value}")
        lines += [
            "# HELP tollway_throttle_quota_rebuilds_total Lost billing-period counters rebuilt from usage.",
            "# TYPE tollway_throttle_quota_rebuilds_total counter",
        ]
        for result, value in sorted(self.quota_rebuilds.items()):
            lines.append(f'tollway_throttle_quota_rebuilds_total{{result="{_escape(result)}"}} {value}')
        lines += [
            "# HELP tollway_throttle_redis_errors_total Redis calls that failed or were skipped.",
            "# TYPE tollway_throttle_redis_errors_total counter",
        ]
        for error, value in sorted(self.redis_errors.items()):
            lines.append(f'tollway_throttle_redis_errors_total{{error="{_escape(error)}"}} {value}')
        lines += [
            "# HELP tollway_throttle_redis_seconds Latency of successful Redis calls.",
            "# TYPE tollway_throttle_redis_seconds histogram",
        ]
        cumulative = 0
        for bound, count in zip((*_BUCKETS, float("inf")), self._bucket_counts, strict=True):
            cumulative += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            lines.append(f'tollway_throttle_redis_seconds_bucket{{le="{le}"}} {cumulative}')
        lines.append(f"tollway_throttle_redis_seconds_sum {self._latency_sum}")
        lines.append(f"tollway_throttle_redis_seconds_count {self._latency_count}")
        return "\n".join(lines + self._render_store()) + "\n"

    def _render_store(self) -> list[str]:
        lines = [
            "# HELP tollway_throttle_redis_batch_requests Requests per Redis script call.",
            "# TYPE tollway_throttle_redis_batch_requests histogram",
            *self.batch_requests.render("tollway_throttle_redis_batch_requests"),
        ]
        if self.node_latency or self.node_errors:
            lines += [
                "# HELP tollway_throttle_redis_node_seconds Latency of successful calls, per cluster node.",
                "# TYPE tollway_throttle_redis_node_seconds histogram",
            ]
            for node, histogram in sorted(self.node_latency.items()):
                lines += histogram.render("tollway_throttle_redis_node_seconds", f'node="{_escape(node)}"')
            lines += [
                "# HELP tollway_throttle_redis_node_errors_total Failed calls, per cluster node.",
                "# TYPE tollway_throttle_redis_node_errors_total counter",
            ]
            for (node, error), value in sorted(self.node_errors.items()):
                labels = f'node="{_escape(node)}",error="{_escape(error)}"'
                lines.append(f"tollway_throttle_redis_node_errors_total{{{labels}}} {value}")
        lines += [
            "# HELP tollway_throttle_compensations_total Shared-limit steps taken back after a refusal.",
            "# TYPE tollway_throttle_compensations_total counter",
        ]
        for result, value in sorted(self.compensations.items()):
            lines.append(f'tollway_throttle_compensations_total{{result="{_escape(result)}"}} {value}')
        return lines

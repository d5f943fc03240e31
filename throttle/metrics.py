"""Throttle metrics in the Prometheus text format (no client library: a few counters and one histogram).

tollway_throttle_decisions_total{plan,result}   result: ok, over_limit, overage, shadow_over_limit,
                                                  store_unavailable_allowed, store_unavailable_denied,
                                                  quota_rebuilding, unknown
tollway_throttle_quota_rebuilds_total{result}   lost billing-period counters rebuilt from usage:
                                                  started, completed, failed (retried), lost_again
tollway_throttle_redis_errors_total{error}
tollway_throttle_redis_seconds (histogram)      latency of successful Redis calls

Registered with the process's metrics endpoint (tollway.metrics, TOLLWAY_METRICS_ADDR).
"""

from __future__ import annotations

import bisect
from collections import Counter

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


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
        return "\n".join(lines) + "\n"

"""What Envoy's own admin interface says about its active health checks of Tollway's clusters."""

from __future__ import annotations

import json

from tollway.envoy import EnvoyProcess


def hosts_passing(envoy: EnvoyProcess, cluster: str) -> list[bool]:
    """Per endpoint of `cluster` (/clusters): True while its last active health checks passed."""
    statuses = json.loads(envoy.admin_get("/clusters?format=json"))["cluster_statuses"]
    (found,) = [status for status in statuses if status["name"] == cluster]
    return [
        not host["health_status"].get("failed_active_health_check", False)
        and host["health_status"].get("eds_health_status") == "HEALTHY"
        for host in found.get("host_statuses", [])
    ]


def health_check_stats(envoy: EnvoyProcess, cluster: str) -> dict[str, int]:
    """Envoy's cluster.<cluster>.health_check.* counters and gauges (attempt, success, failure, healthy)."""
    prefix = f"cluster.{cluster}.health_check."
    stats: dict[str, int] = {}
    for line in envoy.admin_get(f"/stats?filter=^cluster\\.{cluster}\\.health_check\\.").splitlines():
        name, _, value = line.partition(": ")
        if name.startswith(prefix) and value.strip().isdigit():
            stats[name.removeprefix(prefix)] = int(value)
    return stats

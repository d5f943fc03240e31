"""Measuring one gateway under load (bench/gateway.py runs the rows): a peak run with h2load and,
around it, what the load generator cannot see: the requests Envoy's listener took (warm-up included,
and those h2load abandoned when it stopped), the CPU the Python processes and the gateway's Envoy
spent on them (the steadier figure on a shared machine: capacity = 1 / CPU per request, whatever else
competes for the cores), the upstream's CPU (to show it is far from busy), and how many access-log
entries reached the log service (and how many Envoy dropped)."""

from __future__ import annotations

import os
import re
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.loadgen import LoadResult, peak
from bench.scenarios import Target
from usage.completeness import DROPPED

LOG_WAIT_SECONDS = 15.0


@dataclass(frozen=True)
class PeakOptions:
    seconds: float = 4.0
    warmup: float = 1.0
    connections: int = 32


@dataclass
class Sample:
    """One peak run of one target."""

    result: LoadResult
    figures: dict[str, Any]

    @property
    def rate(self) -> float:
        """2xx answers per second: what the rows are compared by."""
        return self.result.ok_rate

    def python_us(self) -> float | None:
        value = self.figures.get("python_cpu_us_per_request")
        return value if value else None


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU of these processes so far (Linux /proc); a process gone counts nothing."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def envoy_counter(admin: str, name: str) -> int:
    """One counter from an Envoy's admin /stats (0 when Envoy has not created it yet)."""
    url = f"http://{admin}/stats?filter=^{re.escape(name)}$"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    for line in text.splitlines():
        stat, _, value = line.partition(":")
        if stat.strip() == name:
            return int(value)
    return 0


def requests_seen(target: Target, timeout: float = 5.0) -> int:
    """Requests the listener has taken, once none is in flight: each is one access-log entry, whether
    it was answered or abandoned by the client (h2load drops its connections when it stops)."""
    prefix = f"http.{target.stat_prefix}"
    deadline = time.monotonic() + timeout
    while envoy_counter(target.envoy_admin, f"{prefix}.downstream_rq_active") and time.monotonic() < deadline:
        time.sleep(0.05)
    return envoy_counter(target.envoy_admin, f"{prefix}.downstream_rq_total")


@dataclass
class Reading:
    """What a target had done at one instant."""

    at: float
    requests: int
    received: int | None
    python_cpu: float
    envoy_cpu: float
    upstream_cpu: float

    @classmethod
    def of(cls, target: Target, upstream: Target) -> Reading:
        return cls(
            at=time.monotonic(),
            requests=requests_seen(target),
            received=target.received() if target.received is not None else None,
            python_cpu=cpu_seconds(target.python_pids()),
            envoy_cpu=cpu_seconds(target.envoy_pids()),
            upstream_cpu=cpu_seconds(upstream.envoy_pids()),
        )


def wait_for_log(target: Target, since: int, expected: int, timeout: float = LOG_WAIT_SECONDS) -> int:
    """Entries the log service received beyond `since`, once they reach `expected` or stop growing for
    2 s (Envoy flushes its access-log buffer every second, usage counts after its own flush)."""
    assert target.received is not None
    deadline = time.monotonic() + timeout
    last, last_change = -1, time.monotonic()
    while True:
        got = target.received() - since
        now = time.monotonic()
        if got != last:
            last, last_change = got, now
        if got >= expected or now > deadline or now - last_change > 2.0:
            return got
        time.sleep(0.2)


def settle(target: Target) -> None:
    """Waits until the log service has the entries of the requests made so far (readiness probes, an
    earlier run), so that a run's count starts from a quiet log."""
    if target.received is not None:
        wait_for_log(target, 0, requests_seen(target))


def measure_peak(target: Target, upstream: Target, h2load: str, options: PeakOptions) -> Sample:
    settle(target)
    decisions_before = target.decisions() if target.decisions is not None else None
    dropped_before = envoy_counter(target.envoy_admin, DROPPED) if target.received is not None else 0
    before = Reading.of(target, upstream)
    result = peak(
        h2load,
        target.url,
        target.headers,
        seconds=options.seconds,
        warmup=options.warmup,
        connections=options.connections,
    )
    after = Reading.of(target, upstream)
    served = max(1, after.requests - before.requests)
    figures: dict[str, Any] = {
        "envoy_requests": after.requests - before.requests,
        "python_cpu_us_per_request": (after.python_cpu - before.python_cpu) / served * 1e6,
        "envoy_cpu_us_per_request": (after.envoy_cpu - before.envoy_cpu) / served * 1e6,
        # Share of one core the upstream Envoy was busy: far below 1 means it set no pace.
        "upstream_busy": (after.upstream_cpu - before.upstream_cpu) / max(1e-9, after.at - before.at),
    }
    if target.received is not None:
        assert before.received is not None
        received = wait_for_log(target, before.received, after.requests - before.requests)
        figures["log_received"] = received
        figures["log_fraction"] = received / served
        # Envoy's access-log stream is lossy by design: what it dropped (buffer full while the log
        # service was slow to read) is not the log service's loss.
        figures["log_dropped_by_envoy"] = envoy_counter(target.envoy_admin, DROPPED) - dropped_before
    if decisions_before is not None and target.decisions is not None:
        decisions = target.decisions()
        decisions.subtract(decisions_before)
        figures["throttle_decisions"] = {result: n for result, n in sorted(decisions.items()) if n}
        # Admitted without counting because Redis did not answer in time (TOLLWAY_REDIS_TIMEOUT_MS):
        # such a row measured the fail-open path, not the limits.
        figures["fail_open"] = decisions["store_unavailable_allowed"]
    return Sample(result, figures)

"""The gateway benchmark: every scenario (bench/scenarios.py) at its peak, one after the other in one
run, then Tollway's rows at a fixed rate beside A; one table, and the figures for bench/results.json.

Peak: h2load, closed loop (bench/loadgen.py). Around each peak run the benchmark also reads what the
load generator cannot see: the requests Envoy's listener completed (warm-up included), the CPU the
Python processes and the gateway's Envoy spent on them (the steadier figure on a shared machine:
capacity = 1 / CPU per request, whatever else competes for the cores), the upstream's CPU (to show it
is far from busy), and how many access-log entries reached the log service.

Fixed rate: for each Tollway row, half its peak, evenly spaced (bench/pacer.py), on that row and then
on A at the same rate, seconds apart.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.loadgen import LoadResult, peak
from bench.pacer import run_paced
from bench.scenarios import SCENARIOS, Lab, LabOptions, Scenario, Target
from usage.completeness import DROPPED

LOG_WAIT_SECONDS = 15.0
HEADER = ("scenario", "requests/s", "p50 ms", "p99 ms", "non-2xx", "vs B", "vs floor", "log",
          "Python µs/req", "Envoy µs/req")  # fmt: skip
FIXED_HEADER = ("fixed rate", "requests/s", "p50 ms", "p99 ms", "A p50 ms", "A p99 ms", "p99 - A p99",
                "non-2xx")  # fmt: skip


@dataclass(frozen=True)
class RunOptions:
    seconds: float = 10.0
    warmup: float = 2.0
    connections: int = 32
    fixed_rate: bool = True


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


def completed(target: Target) -> int:
    return envoy_counter(target.envoy_admin, f"http.{target.stat_prefix}.downstream_rq_completed")


@dataclass
class Reading:
    """What a target had done at one instant."""

    at: float
    completed: int
    received: int | None
    python_cpu: float
    envoy_cpu: float
    upstream_cpu: float

    @classmethod
    def of(cls, target: Target, upstream: Target) -> Reading:
        return cls(
            at=time.monotonic(),
            completed=completed(target),
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
        wait_for_log(target, 0, completed(target))


@dataclass
class Row:
    scenario: Scenario
    result: LoadResult | None = None
    unavailable: str = ""
    error: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    # Fixed-rate run at half this row's peak: this row's and A's.
    fixed: tuple[float, LoadResult, LoadResult | None] | None = None


def measure_peak(
    target: Target, upstream: Target, h2load: str, options: RunOptions
) -> tuple[LoadResult, dict[str, Any]]:
    settle(target)
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
    served = max(1, after.completed - before.completed)
    figures: dict[str, Any] = {
        "envoy_completed": after.completed - before.completed,
        "python_cpu_us_per_request": (after.python_cpu - before.python_cpu) / served * 1e6,
        "envoy_cpu_us_per_request": (after.envoy_cpu - before.envoy_cpu) / served * 1e6,
        # Share of one core the upstream Envoy was busy: far below 1 means it set no pace.
        "upstream_busy": (after.upstream_cpu - before.upstream_cpu) / max(1e-9, after.at - before.at),
    }
    if target.received is not None:
        assert before.received is not None
        received = wait_for_log(target, before.received, after.completed - before.completed)
        figures["log_received"] = received
        figures["log_fraction"] = received / served
        # Envoy's access-log stream is lossy by design: what it dropped (buffer full while the log
        # service was slow to read) is not the log service's loss.
        figures["log_dropped_by_envoy"] = envoy_counter(target.envoy_admin, DROPPED) - dropped_before
    return result, figures


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:,.{digits}f}"


class GatewayBenchmark:
    """Runs the named scenarios in table order and keeps the rows."""

    def __init__(
        self,
        names: Sequence[str],
        work_dir: Path,
        lab_options: LabOptions,
        options: RunOptions,
        h2load: str,
        say: Callable[[str], None] = print,
    ) -> None:
        self.rows = [Row(SCENARIOS[name]) for name in SCENARIOS if name in names]
        self.work_dir = work_dir
        self.lab_options = lab_options
        self.options = options
        self.h2load = h2load
        self.say = say

    def run(self) -> list[Row]:
        with Lab(self.work_dir, self.lab_options) as lab, contextlib.ExitStack() as keep:
            fixed = self.options.fixed_rate and any(row.scenario.mode for row in self.rows)
            # A stays up through the run when the fixed-rate runs need it beside each C row.
            a_target = keep.enter_context(SCENARIOS["A"].open(lab)) if fixed else None
            for row in self.rows:
                row.unavailable = row.scenario.unavailable()
                if row.unavailable:
                    self.say(f"{row.scenario.name}: not available ({row.unavailable})")
                    continue
                self.say(f"{row.scenario.name}: {row.scenario.title} ...")
                try:
                    opened = (
                        contextlib.nullcontext(a_target)
                        if row.scenario.name == "A" and a_target
                        else row.scenario.open(lab)
                    )
                    with opened as target:
                        row.result, row.figures = measure_peak(
                            target, lab.upstream, self.h2load, self.options
                        )
                        self.say(f"   {row.result.rate:,.0f} requests/s, p99 {row.result.p(0.99):.1f} ms")
                        if fixed and row.scenario.mode is not None and a_target is not None:
                            row.fixed = self._fixed_rate(row.result.rate / 2, target, a_target)
                except Exception as error:  # one broken row must not cost the others
                    row.error = f"{type(error).__name__}: {error}"
                    self.say(f"   failed: {row.error}")
        return self.rows

    def _fixed_rate(
        self, rate: float, target: Target, a_target: Target
    ) -> tuple[float, LoadResult, LoadResult]:
        seconds = self.options.seconds
        mine = run_paced("127.0.0.1", target.port, target.path, target.headers, rate=rate, seconds=seconds)
        theirs = run_paced(
            "127.0.0.1", a_target.port, a_target.path, a_target.headers, rate=rate, seconds=seconds
        )
        self.say(
            f"   at {rate:,.0f}/s: p99 {mine.p(0.99):.1f} ms (A at the same rate: {theirs.p(0.99):.1f} ms)"
        )
        return rate, mine, theirs

    # -- the table ----------------------------------------------------------------------------------

    def _by_name(self) -> dict[str, Row]:
        return {row.scenario.name: row for row in self.rows if row.result is not None}

    def ratio(self, row: Row, to: str) -> float | None:
        other = self._by_name().get(to)
        if row.result is None or other is None or other.result is None or other.result.rate == 0:
            return None
        return row.result.rate / other.result.rate

    def capacity_ratio(self, row: Row, to: str) -> float | None:
        """The floor's Python CPU per request over this row's: its capacity relative to the floor's."""
        other = self._by_name().get(to)
        mine = row.figures.get("python_cpu_us_per_request")
        theirs = other.figures.get("python_cpu_us_per_request") if other else None
        return theirs / mine if mine and theirs else None

    def table(self) -> str:
        lines: list[tuple[str, ...]] = [HEADER]
        for row in self.rows:
            name = f"{row.scenario.name} {row.scenario.title}"
            if row.result is None:
                lines.append((name, "not available" if row.unavailable else "failed", *[""] * 8))
                continue
            floor = row.scenario.floor
            vs_floor = self.ratio(row, floor) if floor else None
            log = row.figures.get("log_fraction")
            lines.append(
                (
                    name,
                    _fmt(row.result.rate),
                    _fmt(row.result.p(0.5), 1),
                    _fmt(row.result.p(0.99), 1),
                    str(row.result.non_2xx),
                    _fmt(self.ratio(row, "B"), 2),
                    f"{_fmt(vs_floor, 2)} of {floor}" if vs_floor is not None else "",
                    f"{log:.0%}" if log is not None else "",
                    _fmt(row.figures.get("python_cpu_us_per_request"))
                    if row.figures.get("python_cpu_us_per_request")
                    else "",
                    _fmt(row.figures.get("envoy_cpu_us_per_request")),
                )
            )
        text = _render(lines)
        fixed = [row for row in self.rows if row.fixed is not None]
        if fixed:
            rows: list[tuple[str, ...]] = [FIXED_HEADER]
            for row in fixed:
                assert row.fixed is not None
                rate, mine, theirs = row.fixed
                a_p99 = theirs.p(0.99) if theirs else math.nan
                rows.append(
                    (
                        row.scenario.name,
                        _fmt(rate),
                        _fmt(mine.p(0.5), 1),
                        _fmt(mine.p(0.99), 1),
                        _fmt(theirs.p(0.5), 1) if theirs else "",
                        _fmt(a_p99, 1),
                        f"{mine.p(0.99) - a_p99:+.1f} ms",
                        str(mine.non_2xx),
                    )
                )
            text += "\n\n" + _render(rows)
        return text

    def results(self) -> list[dict[str, Any]]:
        out = []
        for row in self.rows:
            entry: dict[str, Any] = {"scenario": row.scenario.name, "title": row.scenario.title}
            if row.unavailable:
                entry["not_available"] = row.unavailable
            if row.error:
                entry["error"] = row.error
            if row.result is not None:
                entry.update(row.result.summary())
                entry.update({k: round(v, 3) if isinstance(v, float) else v for k, v in row.figures.items()})
                entry["vs_B"] = _round(self.ratio(row, "B"))
                if row.scenario.floor:
                    entry["floor"] = row.scenario.floor
                    entry["vs_floor"] = _round(self.ratio(row, row.scenario.floor))
                    entry["python_capacity_vs_floor"] = _round(self.capacity_ratio(row, row.scenario.floor))
            if row.fixed is not None:
                rate, mine, theirs = row.fixed
                entry["fixed_rate"] = {"rate": round(rate, 1), "tollway": mine.summary(),
                                       "A": theirs.summary() if theirs else None}  # fmt: skip
            out.append(entry)
        return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _render(lines: list[tuple[str, ...]]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = []
    for number, line in enumerate(lines):
        cells = [cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(line)]
        out.append("  ".join(cells).rstrip())
        if number == 0:
            out.append("  ".join("-" * width for width in widths))
    return "\n".join(out)

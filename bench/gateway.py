"""The gateway benchmark: every scenario (bench/scenarios.py) at its peak, in one run; one table, and the
figures for bench/results.json.

The machine is shared, so what else runs drifts over minutes. Two things keep the ratios honest:

- rounds: each row is measured `rounds` times, and its figures are the round with the median rate;
- pairs: a Tollway row is measured, in each round, right after B and its floor (N or F) are measured
  again, and its "vs B" and "vs floor" are the median of those paired ratios (seconds apart, not
  minutes). The static rows (U, A, B, N, F) stay up through the run, so this costs no set-up; only
  one Tollway stack is up at a time.

Fixed rate: for each Tollway row, half its peak, evenly spaced (bench/pacer.py), on that row and then
on A at the same rate, seconds apart.
"""

from __future__ import annotations

import contextlib
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.loadgen import LoadResult
from bench.measure import PeakOptions, Sample, cpu_seconds, measure_peak
from bench.pacer import run_paced
from bench.scenarios import SCENARIOS, Lab, LabOptions, Scenario, Target

HEADER = ("scenario", "2xx/s", "p50 ms", "p99 ms", "non-2xx", "vs B", "vs floor", "log", "fail-open",
          "Python µs/req", "Envoy µs/req")  # fmt: skip
FIXED_HEADER = ("fixed rate", "requests/s", "p50 ms", "p99 ms", "A p50 ms", "A p99 ms", "p99 - A p99",
                "non-2xx", "loop lag p99 / longest", "floor p50 / p99 same rate",
                "floor at half its peak: rate, p50 / p99", "Python µs/req, floor's same rate")  # fmt: skip


@dataclass(frozen=True)
class RunOptions:
    peak: PeakOptions = field(default_factory=PeakOptions)
    rounds: int = 3
    fixed_rate: bool = True
    # Seconds of each fixed-rate run.
    fixed_seconds: float = 5.0


@dataclass
class FixedRun:
    rate: float
    tollway: LoadResult
    a: LoadResult
    # Tollway's event-loop lag during its run: cumulative counts by upper bound (seconds), an increase.
    loop_lag: dict[float, float] = field(default_factory=dict)
    # The row's floor (N or F) at the same rate, and at half of its own peak (the same load relative
    # to its capacity as Tollway's run): what the gRPC stack alone does there.
    floor: LoadResult | None = None
    floor_half: LoadResult | None = None
    floor_half_rate: float = 0.0
    # Python CPU µs per answered request of Tollway's run and of its floor's at the same rate: the two
    # processes' cost compared at one load (at their peaks they run at different loads, and a grpc.aio
    # server's cost per call falls as its load rises).
    python_us: float | None = None
    floor_python_us: float | None = None

    def loop_lag_bound(self, quantile: float) -> float | None:
        """The histogram bucket bound (seconds) holding the `quantile` of the loop's lags; 1.0 = the
        longest stall's bucket. None when nothing was measured."""
        total = self.loop_lag.get(math.inf, 0.0)
        if not total:
            return None
        return next(b for b in sorted(self.loop_lag) if self.loop_lag[b] >= quantile * total)


@dataclass
class Row:
    scenario: Scenario
    samples: list[Sample] = field(default_factory=list)
    # Per round, this row's rate over B's and over its floor's, measured back to back.
    vs_b: list[float] = field(default_factory=list)
    vs_floor: list[float] = field(default_factory=list)
    # Per round, the floor's Python CPU per request over this row's.
    capacity_vs_floor: list[float] = field(default_factory=list)
    paired: list[dict[str, float]] = field(default_factory=list)
    unavailable: str = ""
    error: str = ""
    fixed: FixedRun | None = None

    @property
    def name(self) -> str:
        return self.scenario.name

    @property
    def typical(self) -> Sample | None:
        """The round with the median rate (the lower one of an even count)."""
        if not self.samples:
            return None
        ordered = sorted(self.samples, key=lambda sample: sample.rate)
        return ordered[(len(ordered) - 1) // 2]


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


class GatewayBenchmark:
    """Runs the named scenarios and keeps the rows, in table order."""

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

    def _measure(self, target: Target, upstream: Target) -> Sample:
        return measure_peak(target, upstream, self.h2load, self.options.peak)

    def run(self) -> list[Row]:
        for row in self.rows:
            row.unavailable = row.scenario.unavailable()
            if row.unavailable:
                self.say(f"{row.name}: not available ({row.unavailable})")
        runnable = [row for row in self.rows if not row.unavailable]
        static = [row for row in runnable if row.scenario.mode is None]
        tollway = [row for row in runnable if row.scenario.mode is not None]
        fixed = self.options.fixed_rate and bool(tollway)
        # Up through the run: the static rows asked for, and what the Tollway rows are paired with.
        needed = {row.name for row in static} | (
            {"B", *(row.scenario.floor for row in tollway)} if tollway else set()
        )
        if fixed:
            needed.add("A")
        with Lab(self.work_dir, self.lab_options) as lab, contextlib.ExitStack() as keep:
            targets: dict[str, Target] = {}
            for name in (name for name in SCENARIOS if name in needed):
                try:
                    targets[name] = keep.enter_context(SCENARIOS[name].open(lab))
                except Exception as error:
                    self._failed(next((row for row in static if row.name == name), None), error, name)
            self._static_rounds([row for row in static if row.name in targets], targets, lab)
            for row in tollway:
                self._tollway_row(row, targets, lab, fixed)
        return self.rows

    def _failed(self, row: Row | None, error: Exception, name: str) -> None:
        message = f"{type(error).__name__}: {error}"
        if row is not None:
            row.error = message
        self.say(f"{name}: failed: {message}")

    def _static_rounds(self, rows: list[Row], targets: dict[str, Target], lab: Lab) -> None:
        if not rows:
            return
        for number in range(self.options.rounds):
            self.say(f"round {number + 1}/{self.options.rounds}: {', '.join(row.name for row in rows)}")
            rates: dict[str, float] = {}
            for row in rows:
                try:
                    sample = self._measure(targets[row.name], lab.upstream)
                except Exception as error:  # one broken row must not cost the others
                    self._failed(row, error, row.name)
                    continue
                row.samples.append(sample)
                rates[row.name] = sample.rate
                self.say(f"   {row.name}: {sample.rate:,.0f} 2xx/s, p99 {sample.result.p(0.99):.1f} ms")
            for row in rows:
                if row.name in rates and rates.get("B"):
                    row.vs_b.append(rates[row.name] / rates["B"])

    def _tollway_row(self, row: Row, targets: dict[str, Target], lab: Lab, fixed: bool) -> None:
        floor = row.scenario.floor
        if "B" not in targets or floor not in targets:
            row.error = "B or its floor could not be started"
            return
        self.say(f"{row.name}: {row.scenario.title} (each round: B, {floor}, {row.name})")
        try:
            with row.scenario.open(lab) as target:
                for _ in range(self.options.rounds):
                    b = self._measure(targets["B"], lab.upstream)
                    base = self._measure(targets[floor], lab.upstream)
                    mine = self._measure(target, lab.upstream)
                    row.samples.append(mine)
                    row.paired.append(
                        {"B": round(b.rate, 1), floor: round(base.rate, 1), row.name: round(mine.rate, 1)}
                    )
                    if b.rate:
                        row.vs_b.append(mine.rate / b.rate)
                    if base.rate:
                        row.vs_floor.append(mine.rate / base.rate)
                    if base.python_us() and mine.python_us():
                        row.capacity_vs_floor.append(base.python_us() / mine.python_us())  # type: ignore[operator]
                    self.say(
                        f"   B {b.rate:,.0f}, {floor} {base.rate:,.0f}, {row.name} {mine.rate:,.0f}"
                        f" 2xx/s (p99 {mine.result.p(0.99):.1f} ms, non-2xx {mine.result.non_2xx})"
                    )
                typical = row.typical
                if fixed and typical is not None and "A" in targets:
                    row.fixed = self._fixed_rate(typical.rate / 2, target, targets["A"])
                    floor_peak = _median([paired[floor] for paired in row.paired])
                    self._floor_at_fixed_rates(row.fixed, targets[floor], floor_peak)
        except Exception as error:  # one broken row must not cost the others
            self._failed(row, error, row.name)

    def _fixed_rate(self, rate: float, target: Target, a: Target) -> FixedRun:
        seconds = self.options.fixed_seconds
        lag_before = target.loop_lag() if target.loop_lag is not None else {}
        mine, cpu_us = _paced_with_cpu(target, rate, seconds)
        lag_after = target.loop_lag() if target.loop_lag is not None else {}
        theirs = run_paced("127.0.0.1", a.port, a.path, a.headers, rate=rate, seconds=seconds)
        run = FixedRun(rate, mine, theirs, {b: n - lag_before.get(b, 0.0) for b, n in lag_after.items()})
        run.python_us = cpu_us
        self.say(
            f"   at {rate:,.0f}/s: p99 {mine.p(0.99):.1f} ms (A at the same rate: {theirs.p(0.99):.1f} ms;"
            f" loop lag p99 <= {_ms(run.loop_lag_bound(0.99))}, longest <= {_ms(run.loop_lag_bound(1.0))})"
        )
        return run

    def _floor_at_fixed_rates(self, run: FixedRun, floor: Target, floor_peak: float | None) -> None:
        seconds = self.options.fixed_seconds
        run.floor, run.floor_python_us = _paced_with_cpu(floor, run.rate, seconds)
        if floor_peak:
            run.floor_half_rate = floor_peak / 2
            run.floor_half, _ = _paced_with_cpu(floor, run.floor_half_rate, seconds)
        self.say(
            f"   its floor at {run.rate:,.0f}/s: p99 {_p99(run.floor)} ms;"
            f" at half its own peak ({run.floor_half_rate:,.0f}/s): p99 {_p99(run.floor_half)} ms"
        )

    # -- the report ---------------------------------------------------------------------------------

    def table(self) -> str:
        lines: list[tuple[str, ...]] = [HEADER]
        for row in self.rows:
            name = f"{row.name} {row.scenario.title}"
            typical = row.typical
            if typical is None:
                lines.append((name, "not available" if row.unavailable else "failed", *[""] * 9))
                continue
            vs_floor = _median(row.vs_floor)
            log = typical.figures.get("log_fraction")
            lines.append(
                (
                    name,
                    _fmt(typical.rate),
                    _fmt(typical.result.p(0.5), 1),
                    _fmt(typical.result.p(0.99), 1),
                    str(typical.result.non_2xx),
                    _fmt(_median(row.vs_b), 2),
                    f"{_fmt(vs_floor, 2)} of {row.scenario.floor}" if vs_floor is not None else "",
                    f"{log:.0%}" if log is not None else "",
                    str(typical.figures["fail_open"]) if "fail_open" in typical.figures else "",
                    _fmt(typical.python_us()),
                    _fmt(typical.figures.get("envoy_cpu_us_per_request")),
                )
            )
        text = _render(lines)
        fixed = [(row.name, row.fixed) for row in self.rows if row.fixed is not None]
        if fixed:
            rows: list[tuple[str, ...]] = [FIXED_HEADER]
            for name, run in fixed:
                rows.append(
                    (
                        name,
                        _fmt(run.rate),
                        _fmt(run.tollway.p(0.5), 1),
                        _fmt(run.tollway.p(0.99), 1),
                        _fmt(run.a.p(0.5), 1),
                        _fmt(run.a.p(0.99), 1),
                        f"{run.tollway.p(0.99) - run.a.p(0.99):+.1f} ms",
                        str(run.tollway.non_2xx),
                        f"{_ms(run.loop_lag_bound(0.99))} / {_ms(run.loop_lag_bound(1.0))}",
                        f"{_p50(run.floor)} / {_p99(run.floor)}",
                        f"{_fmt(run.floor_half_rate)}, {_p50(run.floor_half)} / {_p99(run.floor_half)}",
                        f"{_fmt(run.python_us)}, {_fmt(run.floor_python_us)}",
                    )
                )
            text += "\n\n" + _render(rows)
        return text

    def results(self) -> list[dict[str, Any]]:
        out = []
        for row in self.rows:
            entry: dict[str, Any] = {"scenario": row.name, "title": row.scenario.title}
            if row.unavailable:
                entry["not_available"] = row.unavailable
            if row.error:
                entry["error"] = row.error
            typical = row.typical
            if typical is not None:
                entry.update(typical.result.summary())
                entry.update(
                    {k: round(v, 3) if isinstance(v, float) else v for k, v in typical.figures.items()}
                )
                entry["rounds"] = [round(sample.rate, 1) for sample in row.samples]
                entry["vs_B"] = _round(_median(row.vs_b))
            if row.scenario.floor and row.samples:
                entry["floor"] = row.scenario.floor
                entry["vs_floor"] = _round(_median(row.vs_floor))
                entry["python_capacity_vs_floor"] = _round(_median(row.capacity_vs_floor))
                entry["paired_rounds"] = row.paired
            if row.fixed is not None:
                entry["fixed_rate"] = {
                    "rate": round(row.fixed.rate, 1),
                    "tollway": row.fixed.tollway.summary(),
                    "A": row.fixed.a.summary(),
                    "loop_lag_p99_bound_s": row.fixed.loop_lag_bound(0.99),
                    "floor_same_rate": row.fixed.floor.summary() if row.fixed.floor else None,
                    "floor_half_peak_rate": round(row.fixed.floor_half_rate, 1),
                    "python_cpu_us_per_request": _round(row.fixed.python_us),
                    "floor_python_cpu_us_per_request_same_rate": _round(row.fixed.floor_python_us),
                    "floor_half_peak": row.fixed.floor_half.summary() if row.fixed.floor_half else None,
                    "loop_lag_longest_bound_s": row.fixed.loop_lag_bound(1.0),
                }
            out.append(entry)
        return out


def _paced_with_cpu(target: Target, rate: float, seconds: float) -> tuple[LoadResult, float | None]:
    """A fixed-rate run on `target`, and its Python processes' CPU µs per answered request meanwhile."""
    pids = target.python_pids()
    before = cpu_seconds(pids)
    result = run_paced("127.0.0.1", target.port, target.path, target.headers, rate=rate, seconds=seconds)
    answered = sum(result.statuses.values())
    if not pids or not answered:
        return result, None
    return result, (cpu_seconds(pids) - before) / answered * 1e6


def _p50(result: LoadResult | None) -> str:
    return _fmt(result.p(0.5), 1) if result is not None else "-"


def _p99(result: LoadResult | None) -> str:
    return _fmt(result.p(0.99), 1) if result is not None else "-"


def _ms(bound: float | None) -> str:
    """A lag bucket's bound as "<= N ms" reads it ("-" when none; "inf" past the last bucket)."""
    if bound is None:
        return "-"
    return "inf" if math.isinf(bound) else f"{bound * 1000:g} ms"


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:,.{digits}f}"


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

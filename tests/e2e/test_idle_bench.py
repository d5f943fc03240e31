"""`python bench/idle_bench.py` (also `python -m bench --only idle`) measures a real, seeded `tollway
up` that answered through its Envoy: run here for a second on SQLite, it must start, measure a window
of the length asked for, and stop."""

from __future__ import annotations

import math

from bench.idle_bench import measure


def test_the_idle_benchmark_measures_a_running_stack() -> None:
    result = measure("sqlite", settle=0.5, seconds=1.0)
    assert result["seconds"] >= 1.0
    assert math.isfinite(result["core_percent"]) and result["core_percent"] >= 0
    assert result["cpu_seconds"] >= 0

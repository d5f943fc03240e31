"""The per-component benchmarks as scenarios of `python -m bench`: each script runs as it does on its
own (`.venv/bin/python bench/<name>_bench.py --help`), here with sizes short enough for `make bench`
(`--quick`: shorter still). The scale benchmark runs only when named (`make bench-scale` is the long
one)."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ComponentBench:
    name: str
    what: str
    command: tuple[str, ...]
    quick: tuple[str, ...]


COMPONENT_BENCHES = {
    bench.name: bench
    for bench in (
        ComponentBench(
            "check", "ext_authz Check vs a no-op servicer over gRPC",
            ("bench/check_bench.py", "--requests", "5000"), ("--requests", "2000"),
        ),
        ComponentBench(
            "ratelimit", "ShouldRateLimit (memory, Redis) vs a no-op RateLimitService",
            ("bench/ratelimit_bench.py", "--requests", "5000", "--rounds", "1"), ("--requests", "2000"),
        ),
        ComponentBench(
            "ingest", "access-log ingestion into durable summaries vs a parse-only service",
            ("bench/ingest_bench.py", "--entries", "30000"), ("--entries", "10000"),
        ),
        ComponentBench(
            "invoice", "invoice run vs one SQL aggregate",
            ("bench/invoice_bench.py", "--subscriptions", "1000", "--windows", "48"),
            ("--subscriptions", "300", "--windows", "24"),
        ),
        ComponentBench(
            "idle", "an idle `tollway up`: its background work's CPU, % of a core",
            ("bench/idle_bench.py", "--seconds", "30"), ("--seconds", "10", "--settle", "5"),
        ),
        ComponentBench(
            "scale", "two keymgr replicas on 100k keys in PostgreSQL (long; `make bench-scale`)",
            ("-m", "bench.scale", "--quick"), (),
        ),
    )
}  # fmt: skip
# What `python -m bench` runs unless told otherwise.
DEFAULT_COMPONENTS = ("check", "ratelimit", "ingest", "invoice", "idle")


def run_component(bench: ComponentBench, quick: bool) -> dict[str, Any]:
    """Runs one script with this interpreter, its output shown as it comes and kept for results.json."""
    command = [sys.executable, *bench.command, *(bench.quick if quick else ())]
    started = time.monotonic()
    lines: list[str] = []
    with subprocess.Popen(
        command, cwd=BENCH_DIR.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            print("   " + line.rstrip(), flush=True)
            lines.append(line.rstrip())
    return {
        "command": " ".join(["python", *command[1:]]),
        "exit_code": process.returncode,
        "seconds": round(time.monotonic() - started, 1),
        "output": lines,
    }

"""`python -m bench` (what `make bench` runs): the end-to-end gateway table, then the per-component
benchmarks, all in one command; figures in bench/results.json. See bench/README.md.

    .venv/bin/python -m bench                      # everything but the long scale benchmark
    .venv/bin/python -m bench --quick              # one round of 3 s per row, smaller component runs
    .venv/bin/python -m bench --only B,N,C-memory  # some rows (names: --list)
    .venv/bin/python -m bench --envoy-concurrency 2 --rounds 5 --seconds 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.components import COMPONENT_BENCHES, DEFAULT_COMPONENTS, run_component
from bench.gateway import GatewayBenchmark, RunOptions
from bench.loadgen import LoadGeneratorMissing, ensure_h2load, h2load_version
from bench.measure import PeakOptions
from bench.scenarios import DEFAULT_DATABASE, DEFAULT_REDIS, SCENARIOS, LabOptions
from tollway.envoy import envoy_binary
from tollway.settings import Settings
from tollway.vocabulary import EnvoyAuthMode

RESULTS = Path(__file__).resolve().parent / "results.json"
GROUPS = {"gateway": tuple(SCENARIOS), "components": DEFAULT_COMPONENTS}


def _names(values: list[str]) -> list[str]:
    chosen: list[str] = []
    for value in values:
        for name in (part.strip() for part in value.split(",")):
            if not name:
                continue
            expanded = GROUPS.get(name, (name,))
            unknown = [n for n in expanded if n not in SCENARIOS and n not in COMPONENT_BENCHES]
            if unknown:
                raise SystemExit(f"unknown scenario {unknown[0]!r}; see --list")
            chosen += [n for n in expanded if n not in chosen]
    return chosen


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", action="append", default=[], help="scenarios or groups to run (comma-separated)"
    )
    parser.add_argument("--skip", action="append", default=[], help="scenarios or groups to leave out")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument(
        "--quick", action="store_true", help="one round of 3 s per row, 0.5 s warm-up, short component runs"
    )
    parser.add_argument(
        "--rounds", type=int, help="rounds per row (paired for Tollway's rows) [3; --quick 1]"
    )
    parser.add_argument("--seconds", type=float, help="measured seconds per row and round [4; --quick 3]")
    parser.add_argument(
        "--warmup", type=float, help="warm-up seconds before each measurement [1; --quick 0.5]"
    )
    parser.add_argument("--fixed-seconds", type=float, help="seconds of each fixed-rate run [10; --quick 3]")
    parser.add_argument("--connections", type=int, default=32, help="h2load connections (one thread) [32]")
    parser.add_argument(
        "--envoy-concurrency", type=int, default=1, help="worker threads of each gateway Envoy [1]"
    )
    parser.add_argument(
        "--database",
        default=DEFAULT_DATABASE,
        help="PostgreSQL server for C's private databases, or 'sqlite'",
    )
    parser.add_argument("--redis-url", default=DEFAULT_REDIS, help="Redis of the Redis-store rows")
    parser.add_argument(
        "--envoy-auth",
        choices=[mode.value for mode in EnvoyAuthMode],
        default=Settings().envoy_auth,
        help="the Envoy-facing link of Tollway's rows and of the floors N and F [Tollway's default]",
    )
    parser.add_argument("--no-fixed-rate", action="store_true", help="skip the fixed-rate latency runs")
    parser.add_argument("--no-install", action="store_true", help="never install h2load; fail when missing")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"results file [{RESULTS.name}]")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.seconds = args.seconds or (3.0 if args.quick else 4.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0)
    args.fixed_seconds = args.fixed_seconds or (3.0 if args.quick else 10.0)
    return args


def _list() -> None:
    for name, scenario in SCENARIOS.items():
        note = scenario.unavailable()
        print(f"  {name:14s} {scenario.title}" + (f"  [not available: {note}]" if note else ""))
    for name, bench in COMPONENT_BENCHES.items():
        default = "" if name in DEFAULT_COMPONENTS else "  [only when named]"
        print(f"  {name:14s} {bench.what}{default}")
    print("  groups: gateway, components")


def _machine(h2load: str | None) -> dict[str, Any]:
    def run(*command: str) -> str:
        done = subprocess.run(command, capture_output=True, text=True)
        return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else ""

    return {
        "cpus": os.cpu_count(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "envoy": run(envoy_binary(), "--version").split("version: ")[-1],
        "h2load": h2load_version(h2load) if h2load else "",
        "commit": run("git", "-C", str(RESULTS.parent), "rev-parse", "--short", "HEAD"),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        _list()
        return 0
    names = _names(args.only or ["gateway", "components"])
    skipped = set(_names(args.skip))
    names = [name for name in names if name not in skipped]
    gateway_names = [name for name in names if name in SCENARIOS]
    component_names = [name for name in names if name in COMPONENT_BENCHES]
    command = " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])])
    print(f"command: {command}", flush=True)

    h2load = None
    if gateway_names:
        try:
            h2load = ensure_h2load(install=not args.no_install)
        except LoadGeneratorMissing as missing:
            print(f"error: {missing}", file=sys.stderr)
            return 2
    results: dict[str, Any] = {
        "command": command,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": _machine(h2load),
        "options": {
            "rounds": args.rounds,
            "seconds": args.seconds,
            "fixed_seconds": args.fixed_seconds,
            "warmup": args.warmup,
            "connections": args.connections,
            "envoy_concurrency": args.envoy_concurrency,
            "envoy_auth": args.envoy_auth,
            "database": "sqlite" if args.database == "sqlite" else "postgresql",
        },
    }
    table = ""
    if gateway_names:
        assert h2load is not None
        print(
            f"gateway: Envoy --concurrency {args.envoy_concurrency}, h2load 1 thread {args.connections} "
            f"connections; {args.rounds} round(s) of {args.seconds:g} s per row, each after"
            f" {args.warmup:g} s of warm-up",
            flush=True,
        )
        options = RunOptions(
            PeakOptions(args.seconds, args.warmup, args.connections),
            rounds=args.rounds,
            fixed_rate=not args.no_fixed_rate,
            fixed_seconds=args.fixed_seconds,
        )
        lab = LabOptions(
            envoy_concurrency=args.envoy_concurrency,
            database=args.database,
            redis_url=args.redis_url,
            envoy_auth=args.envoy_auth,
        )
        with tempfile.TemporaryDirectory(prefix="tollway-bench-") as tmp:
            benchmark = GatewayBenchmark(gateway_names, Path(tmp), lab, options, h2load,
                                         say=lambda line: print(line, flush=True))  # fmt: skip
            benchmark.run()
        table = benchmark.table()
        results["gateway"] = benchmark.results()
        results["gateway_table"] = table.splitlines()
        print("\n" + table + "\n", flush=True)
    if component_names:
        results["components"] = {}
        for name in component_names:
            bench = COMPONENT_BENCHES[name]
            print(f"{name}: {bench.what}", flush=True)
            results["components"][name] = run_component(bench, args.quick)
    results["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    if table:
        print(table)
    print(f"\nfigures: {args.output}")
    failed = [r["scenario"] for r in results.get("gateway", []) if "error" in r]
    failed += [n for n, r in results.get("components", {}).items() if r["exit_code"] != 0]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

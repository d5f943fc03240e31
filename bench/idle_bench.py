"""What an idle Tollway costs: `tollway up` (its services, not Envoy) seeded with a plan, an API, a
subscription and a key, then left untouched, its CPU time read from /proc over a window after it
settled. Background work (change-feed polls, webhook delivery rounds, metering, the completeness
sampler, Envoy's health checks, the loop-lag probe) is what an idle process does, and each replica of a
fleet pays it all the time; under load it is paid per second, not per request.

Run: .venv/bin/python bench/idle_bench.py [--seconds 30] [--settle 15] [--database sqlite]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.measure import cpu_seconds
from bench.scale_replicas import free_port
from bench.scenarios import DEFAULT_DATABASE, DEFAULT_REDIS, UNLIMITED
from bench.tollway_stack import TollwayGateway, TollwayMode
from tollway.app.demo import start_echo_server


def measure(database: str, settle: float, seconds: float) -> dict[str, float]:
    upstream_port = free_port()
    upstream = start_echo_server("127.0.0.1", upstream_port)
    with tempfile.TemporaryDirectory(prefix="tollway-idle-") as work_dir:
        gateway = TollwayGateway(
            Path(work_dir),
            upstream_port,
            UNLIMITED,
            TollwayMode("memory"),
            database=database,
            redis_url=DEFAULT_REDIS,
            envoy_concurrency=1,
        )
        gateway.start()
        try:
            time.sleep(settle)
            pids = gateway.python_pids()
            before, started = cpu_seconds(pids), time.monotonic()
            time.sleep(seconds)
            used, elapsed = cpu_seconds(pids) - before, time.monotonic() - started
            gateway.check_alive()
        finally:
            gateway.stop()
            upstream.shutdown()
    return {
        "seconds": round(elapsed, 1),
        "cpu_seconds": round(used, 3),
        "core_percent": round(100 * used / elapsed, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window [30]")
    parser.add_argument("--settle", type=float, default=15.0, help="seconds left idle before it [15]")
    parser.add_argument("--database", default=DEFAULT_DATABASE, help="PostgreSQL server, or 'sqlite'")
    args = parser.parse_args()
    print(f"command: python bench/idle_bench.py {' '.join(sys.argv[1:])}".rstrip())
    result = measure(args.database, args.settle, args.seconds)
    print(
        f"  idle `tollway up` ({'SQLite' if args.database == 'sqlite' else 'PostgreSQL'}): "
        f"{result['core_percent']:.2f} % of a core over {result['seconds']} s"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()

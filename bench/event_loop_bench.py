"""The gRPC server's CPU per call on asyncio's event loop against uvloop (TOLLWAY_EVENT_LOOP), pairs of
runs alternating so that a shared machine's drift hits both alike.

Each run starts a grpc.aio server with one unary method (the health service's Check) in its own process
on the chosen loop, drives it from another process with 32 concurrent callers, and reads the server's
CPU time (user + system, /proc) over the measured calls.

    .venv/bin/python bench/event_loop_bench.py [--pairs 6] [--calls 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tollway import event_loop

CONCURRENCY = 32


class _Health(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    async def Check(self, request: object, context: object) -> health_pb2.HealthCheckResponse:
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


async def _serve() -> None:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(_Health(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()


async def _drive(port: int, calls: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest()

        async def caller(count: int) -> None:
            for _ in range(count):
                await stub.Check(request)

        await asyncio.gather(*(caller(calls // CONCURRENCY) for _ in range(CONCURRENCY)))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(loop: str, calls: int) -> tuple[float, float]:
    """(calls per second, server CPU µs per call) of one run on `loop`."""
    server = subprocess.Popen([sys.executable, __file__, "--serve", loop], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = server.stdout.readline().strip()
        drive = [sys.executable, __file__, "--drive", port]
        subprocess.run([*drive, str(calls // 5)], check=True)  # warm-up
        cpu, started = _cpu_seconds(server.pid), time.perf_counter()
        subprocess.run([*drive, str(calls)], check=True)
        elapsed = time.perf_counter() - started
        return calls / elapsed, 1e6 * (_cpu_seconds(server.pid) - cpu) / calls
    finally:
        server.kill()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--drive", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        event_loop.run(_serve(), args.serve)
        return
    if args.drive:
        asyncio.run(_drive(*args.drive))
        return
    ratios = []
    for pair in range(1, args.pairs + 1):
        results = {loop: _measure(loop, args.calls) for loop in ("asyncio", "uvloop")}
        (rate_a, cpu_a), (rate_u, cpu_u) = results["asyncio"], results["uvloop"]
        ratios.append(cpu_u / cpu_a)
        print(
            f"pair {pair}: asyncio {rate_a:6.0f}/s {cpu_a:6.1f} µs/call   "
            f"uvloop {rate_u:6.0f}/s {cpu_u:6.1f} µs/call   uvloop/asyncio CPU {cpu_u / cpu_a:.2f}"
        )
    ratios.sort()
    print(f"median uvloop/asyncio server CPU per call: {ratios[len(ratios) // 2]:.2f}")


if __name__ == "__main__":
    main()

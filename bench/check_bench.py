"""Check throughput and latency: Tollway's AuthorizationServicer against a no-op one, same run.

    .venv/bin/python bench/check_bench.py [--requests 20000] [--concurrency 32] [--keys 1000]

1. in-process: servicer.check() on prebuilt CheckRequests (decision + response, no gRPC), then the fused
   mode's Check (TOLLWAY_THROTTLE_MODE=authz: the plan's limits applied in the same call, memory store);
2. over gRPC: a grpc.aio server in a child process (so client and server do not share one event loop),
   first the no-op servicer, then the real one, the same client load against each.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc
from google.rpc import code_pb2, status_pb2

from keymgr.index import KeyIndex
from keymgr.keys import key_hash, new_key
from keymgr.servicer import AuthorizationServicer, add_authorization_service
from throttle.counters import MemoryCounterStore
from throttle.gate import ThrottleGate
from throttle.index import ThrottleIndex
from throttle.service import ThrottleService
from tollway import schema
from tollway.db import Database

SECRET = "bench-secret"
API_ID = "api_bench"


async def seed(url: str, keys: int) -> list[str]:
    db = Database(url)
    await db.create_schema()
    full_keys = []
    async with db.session() as session:
        # Limits every request is counted in and none reaches (the fused row applies them).
        session.add(
            schema.Plan(id="plan_bench", name="bench", requests_per_minute=10**9, requests_per_day=10**9)
        )
        session.add(schema.Api(id=API_ID, name="bench", context_path="/bench", published=True))
        await session.flush()
        for i in range(keys):
            key = new_key()
            full_keys.append(key.full_key)
            app_id = f"app_{i}"
            session.add(schema.Application(id=app_id, name=app_id))
            await session.flush()
            session.add(
                schema.Subscription(id=f"sub_{i}", application_id=app_id, api_id=API_ID, plan_id="plan_bench")
            )
            session.add(
                schema.ApiKey(
                    key_id=key.key_id, application_id=app_id, key_hash=key_hash(SECRET, key.full_key)
                )
            )
        await db.record_change(session)
        await session.commit()
    await db.dispose()
    return full_keys


def check_request(full_key: str) -> external_auth_pb2.CheckRequest:
    http = attribute_context_pb2.AttributeContext.HttpRequest(id="1", method="GET", path="/bench/x")
    http.headers.update(
        {
            ":authority": "gateway",
            ":method": "GET",
            ":path": "/bench/x",
            "user-agent": "bench",
            "x-request-id": "0f5c1c7e-4a8b-4c1e-9a54-2f7c2d8e9b11",
            "x-api-key": full_key,
        }
    )
    attributes = attribute_context_pb2.AttributeContext(
        request=attribute_context_pb2.AttributeContext.Request(http=http)
    )
    attributes.source.address.socket_address.address = "192.0.2.1"
    attributes.context_extensions["api_id"] = API_ID
    return external_auth_pb2.CheckRequest(attributes=attributes)


class NoopServicer(external_auth_pb2_grpc.AuthorizationServicer):
    _OK = external_auth_pb2.CheckResponse(status=status_pb2.Status(code=code_pb2.OK))

    async def Check(self, request, context):
        return self._OK


async def load_index(url: str) -> KeyIndex:
    index = KeyIndex(Database(url))
    await index.reload()
    return index


def serve(url: str, noop: bool, port_out) -> None:
    async def main() -> None:
        server = grpc.aio.server()
        if noop:
            external_auth_pb2_grpc.add_AuthorizationServicer_to_server(NoopServicer(), server)
        else:
            add_authorization_service(AuthorizationServicer(await load_index(url), SECRET), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        port_out.send(port)
        await server.wait_for_termination()

    asyncio.run(main())


async def in_process_fused(
    url: str, index: KeyIndex, requests: list[external_auth_pb2.CheckRequest], n: int
) -> None:
    """The fused Check: decision, the limits' one store step and the answer's bytes, no gRPC."""
    limits = ThrottleIndex(Database(url))
    await limits.load_all()
    servicer = AuthorizationServicer(
        index, SECRET, gate=ThrottleGate(ThrottleService(limits, MemoryCounterStore()))
    )
    for r in requests[:100]:
        await servicer.Check(r, None)  # type: ignore[arg-type]  # warm-up; no context is read
    cpu_started, started = time.process_time(), time.perf_counter()
    for i in range(n):
        await servicer.Check(requests[i % len(requests)], None)  # type: ignore[arg-type]
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    print(
        f"  in-process Check, fused, allowed   : {n / elapsed:9.0f} decisions/s"
        f"  ({cpu / n * 1e6:.1f} µs CPU each)"
    )


def in_process(index: KeyIndex, requests: list[external_auth_pb2.CheckRequest], n: int) -> None:
    servicer = AuthorizationServicer(index, SECRET)
    denied = [check_request("tw_" + "a" * 12 + "_" + "b" * 32)] * 100
    for label, pool in (("allowed", requests), ("denied key_invalid", denied)):
        for r in pool[:100]:
            servicer.check(r)  # warm-up
        started = time.perf_counter()
        for i in range(n):
            servicer.check(pool[i % len(pool)])
        elapsed = time.perf_counter() - started
        rate, each = n / elapsed, elapsed / n * 1e6
        print(f"  in-process check(), {label:18s}: {rate:9.0f} decisions/s  ({each:.1f} µs each)")


async def load(
    port: int, requests: list[external_auth_pb2.CheckRequest], n: int, concurrency: int
) -> tuple[float, float, float]:
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        for r in requests[:200]:
            await stub.Check(r)  # warm-up
        counter = iter(range(n))

        async def worker() -> None:
            for i in counter:
                t0 = time.perf_counter()
                response = await stub.Check(requests[i % len(requests)])
                latencies.append(time.perf_counter() - t0)
                assert response.status.code == code_pb2.OK

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    p50 = statistics.median(latencies) * 1e3
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1e3
    return n / elapsed, p50, p99


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--keys", type=int, default=1000)
    args = parser.parse_args()
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        full_keys = asyncio.run(seed(url, args.keys))
        random.seed(1)
        requests = [check_request(random.choice(full_keys)) for _ in range(2000)]

        index = asyncio.run(load_index(url))
        print(f"{args.keys} keys; {args.requests} requests; concurrency {args.concurrency}")
        in_process(index, requests, args.requests)
        asyncio.run(in_process_fused(url, index, requests, args.requests))

        ctx = multiprocessing.get_context("spawn")
        for label, noop in (("no-op servicer", True), ("tollway Check", False)):
            receive, send = ctx.Pipe(duplex=False)
            process = ctx.Process(target=serve, args=(url, noop, send), daemon=True)
            process.start()
            try:
                port = receive.recv()
                rate, p50, p99 = asyncio.run(load(port, requests, args.requests, args.concurrency))
                print(f"  gRPC, {label:15s}: {rate:7.0f} Checks/s  p50 {p50:.2f} ms  p99 {p99:.2f} ms")
            finally:
                process.terminate()
                process.join()


if __name__ == "__main__":
    main()

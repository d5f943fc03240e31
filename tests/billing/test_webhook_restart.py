"""A Tollway restart mid-retry loses nothing: billing runs as its own OS process (`tollway serve`),
the receiver fails the first attempts, the process is killed (SIGKILL) between two attempts and
started again on the same database; the event is then delivered, once. Both databases."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.billing.billing_helpers import EPOCH, World
from tests.billing.webhook_receiver import Receiver
from tests.e2e.harness import free_port
from tollway.billing.v1 import billing_pb2 as pb
from tollway.billing.v1 import billing_pb2_grpc
from tollway.db import Database

TOLLWAY = str(Path(sys.executable).parent / "tollway")
TOKEN = "webhook-restart-token"
METADATA = (("authorization", f"Bearer {TOKEN}"),)


class BillingProcess:
    def __init__(self, work_dir: Path, db: Database) -> None:
        self.work_dir = work_dir
        self.addr = f"127.0.0.1:{free_port()}"
        self.env = {
            **os.environ,
            "TOLLWAY_COMPONENTS": "billing",
            "TOLLWAY_DATA_DIR": str(work_dir),
            "TOLLWAY_DATABASE_URL": db.url,
            "TOLLWAY_DATABASE_SCHEMA": db.schema_name,
            "TOLLWAY_GRPC_ADDR": f"127.0.0.1:{free_port()}",
            "TOLLWAY_ADMIN_ADDR": self.addr,
            "TOLLWAY_ADMIN_TOKEN": TOKEN,
            "TOLLWAY_WEBHOOK_SECRET_KEY": "restart-test-key",
            # Between 1 and 2 s between attempts: time to kill the process between two of them.
            "TOLLWAY_WEBHOOK_RETRY_BASE": "2",
            "TOLLWAY_WEBHOOK_RETRY_MAX": "2",
            "TOLLWAY_WEBHOOK_POLL": "0.1",
            "TOLLWAY_LOG_LEVEL": "INFO",
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def log_text(self) -> str:
        return "".join(path.read_text() for path in sorted(self.work_dir.glob("billing-*.log")))

    def start(self, timeout: float = 60.0) -> None:
        self.starts += 1
        log = open(self.work_dir / f"billing-{self.starts}.log", "wb")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            [TOLLWAY, "serve"], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.addr) as channel:
            stub = billing_pb2_grpc.BillingServiceStub(channel)
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"billing process exited: {self.log_text()}")
                try:
                    stub.ListWebhookEndpoints(pb.ListWebhookEndpointsRequest(), metadata=METADATA, timeout=2)
                    return
                except grpc.RpcError:
                    pass
                assert time.monotonic() < deadline, "billing process did not come up"
                time.sleep(0.1)

    def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver(failures=2).start()
    yield started
    started.stop()


async def test_restart_between_attempts_still_delivers_once(
    database: Database, tmp_path: Path, receiver: Receiver
) -> None:
    world = World(database)
    plan = await world.plan("gold", recurring_fee="10.00")
    sub = await world.subscription(
        await world.application(), await world.api(plan), plan, EPOCH, state="PENDING_APPROVAL"
    )
    billing = BillingProcess(tmp_path, database)
    await asyncio.to_thread(billing.start)
    try:
        async with grpc.aio.insecure_channel(billing.addr) as channel:
            stub = billing_pb2_grpc.BillingServiceStub(channel)
            created = await stub.CreateWebhookEndpoint(
                pb.CreateWebhookEndpointRequest(url=receiver.url, event_types=["subscription.state_changed"]),
                metadata=METADATA,
            )
            receiver.secret = created.signing_secret
            await stub.ApproveSubscription(
                pb.ApproveSubscriptionRequest(subscription_id=sub.id), metadata=METADATA
            )
            log_request = pb.ListWebhookDeliveriesRequest(endpoint_id=created.endpoint.id)

            async def attempts() -> int:
                found = (await stub.ListWebhookDeliveries(log_request, metadata=METADATA)).deliveries
                return found[0].attempts if found else 0

            deadline = time.monotonic() + 60
            while await attempts() < 1:  # the first attempt failed and is recorded
                assert time.monotonic() < deadline, billing.log_text()
                await asyncio.sleep(0.05)
        billing.kill9()
        assert not receiver.successes()  # killed before the event got through
        killed_after = len(receiver.snapshot())
        assert 1 <= killed_after <= 2

        await asyncio.to_thread(billing.start)
        deadline = time.monotonic() + 60
        while not receiver.successes():
            assert time.monotonic() < deadline, billing.log_text()
            await asyncio.sleep(0.05)
        async with grpc.aio.insecure_channel(billing.addr) as channel:
            stub = billing_pb2_grpc.BillingServiceStub(channel)
            deadline = time.monotonic() + 30
            while True:  # the success is recorded right after the receiver answered
                [delivery] = (await stub.ListWebhookDeliveries(log_request, metadata=METADATA)).deliveries
                if delivery.state == pb.WEBHOOK_DELIVERY_STATE_DELIVERED:
                    break
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
    finally:
        billing.stop()
    got = receiver.snapshot()
    assert len(got) == 3 and [r.status for r in got] == [500, 500, 200]
    assert len(receiver.successes()) == 1 and all(r.signature_ok for r in got)
    assert got[0].body["data"]["subscription_id"] == sub.id and got[0].body["data"]["to_state"] == "ACTIVE"
    assert [a.status_code for a in delivery.attempt_log] == [500, 500, 200]
    assert created.signing_secret not in billing.log_text()  # never logged

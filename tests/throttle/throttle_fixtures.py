"""Helpers for the throttle tests: a clock moved by hand, snapshots from plain values, private Redis."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from tests.support import free_port
from throttle.index import SubscriptionInfo, ThrottleIndex, ThrottleSnapshot
from tollway.catalog.limits import PlanLimits

# The shared Redis: 127.0.0.1:6379 unless `make test` started a private one (scripts/test-services).
SHARED_REDIS_URL = os.environ.get("TOLLWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
_shared = urlsplit(SHARED_REDIS_URL)
SHARED_REDIS_ADDR = (_shared.hostname or "127.0.0.1", _shared.port or 6379)


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **amount: float) -> None:
        self.current += timedelta(**amount)


def unique(prefix: str) -> str:
    # Counters in the shared Redis are keyed by subscription: unique ids keep test runs apart.
    return f"{prefix}_{secrets.token_hex(6)}"


def index_with(plans: dict[str, PlanLimits], subscriptions: list[SubscriptionInfo]) -> ThrottleIndex:
    return ThrottleIndex(snapshot=ThrottleSnapshot.build(plans, subscriptions))


def subscription(plan_id: str, anchor: int = 0, sub_id: str | None = None) -> SubscriptionInfo:
    return SubscriptionInfo(
        id=sub_id or unique("sub"),
        plan_id=plan_id,
        application_id="app_1",
        api_id="api_1",
        state="ACTIVE",
        billing_anchor_day=anchor,
    )


class PrivateRedis:
    """A redis-server of the test's own (so stopping it leaves the shared one alone)."""

    def __init__(self, work_dir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.work_dir = work_dir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server binary is required"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.work_dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

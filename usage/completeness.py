"""Reads each Envoy's own access-log counters, so completeness can be stated per node and period.

Envoy's gRPC access logger counts `access_logs.grpc_access_log.logs_written` (entries handed to a
stream, not dropped) and `logs_dropped` (entries lost to back-up). Samples of these cumulative
counters, beside what usage/ counted per node, give received / (written + dropped) for any period."""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from tollway.background import cancel_task
from usage.store import UsageStore

log = logging.getLogger(__name__)

WRITTEN = "access_logs.grpc_access_log.logs_written"
DROPPED = "access_logs.grpc_access_log.logs_dropped"


def read_envoy(host: str, port: int, timeout: float = 2.0) -> tuple[str, int, int]:
    """(node id, logs_written, logs_dropped) from one Envoy admin endpoint."""
    base = f"http://{host}:{port}"
    with urllib.request.urlopen(f"{base}/server_info", timeout=timeout) as response:
        node_id = json.load(response)["command_line_options"]["service_node"] or ""
    if not node_id:
        with urllib.request.urlopen(f"{base}/server_info", timeout=timeout) as response:
            node_id = json.load(response).get("node", {}).get("id", "")
    url = f"{base}/stats?format=json&filter=%5Eaccess_logs%5C.grpc_access_log%5C."
    with urllib.request.urlopen(url, timeout=timeout) as response:
        stats = {
            item["name"]: int(item.get("value", 0)) for item in json.load(response)["stats"] if "name" in item
        }
    return node_id, stats.get(WRITTEN, 0), stats.get(DROPPED, 0)


class CompletenessSampler:
    def __init__(
        self, store: UsageStore, admins: tuple[tuple[str, int], ...], interval: float, copies: int = 1
    ) -> None:
        self.store = store
        # Envoy counts each copy of an entry (one access logger per copy, TOLLWAY_USAGE_COPIES) in the
        # same logs_written; usage counts an entry once, so what Envoy wrote is divided by the copies.
        self.copies = copies
        self.admins = admins
        self.interval = interval
        self.failures: Counter[str] = Counter()  # Envoy admin endpoints that did not answer
        self.db_errors = 0
        # Per node, over the current UTC day: what metrics show (refreshed after every sample).
        self.latest: dict[str, dict[str, Any]] = {}
        self._task: asyncio.Task[None] | None = None

    async def sample_once(self) -> int:
        """Reads every configured Envoy once; returns how many answered."""
        answered = 0
        for host, port in self.admins:
            try:
                node_id, written, dropped = await asyncio.to_thread(read_envoy, host, port)
            except (OSError, ValueError, KeyError):
                self.failures[f"{host}:{port}"] += 1
                continue
            if node_id:
                await self.store.record_sample(
                    node_id, datetime.now(UTC), written // self.copies, dropped // self.copies
                )
                answered += 1
        day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        self.latest = {
            report["node_id"]: report
            for report in await self.store.completeness(day, day + timedelta(days=1))
        }
        return answered

    async def _loop(self) -> None:
        while True:
            try:
                await self.sample_once()
            except Exception:
                self.db_errors += 1
                log.warning("usage: completeness sample failed", exc_info=True)
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self.admins and self.interval > 0:
            self._task = asyncio.create_task(self._loop(), name="usage-completeness")

    async def stop(self) -> None:
        await cancel_task(self._task)
        self._task = None

"""From received entries to durable summaries: WAL group commit, then batched database flushes.

"Received" means "reached the WAL": `submit()` queues records, and every `sync_interval` the queue is
written to the WAL and fsync'd in one go (group commit). A kill -9 loses at most the entries of that
window (a few ms), which Envoy never got an acknowledgement for anyway. Every `flush_interval` the
records already in the WAL are applied to the database in one transaction (dedupe + additive upserts)
and the WAL segments they came from are deleted. A crash between that commit and the deletion replays
the segments at the next start; the dedupe rows committed with the counts make the replay count
nothing twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from usage.classify import Record
from usage.store import ApplyResult
from usage.wal import WriteAheadLog

log = logging.getLogger(__name__)

Sink = Callable[[list[Record]], Awaitable[ApplyResult]]


@dataclass
class IngestMetrics:
    received: int = 0  # records that reached the WAL
    counted: int = 0  # records committed to the database
    duplicates: int = 0  # records the dedupe state refused (replays, repeated request ids)
    replayed: int = 0  # records read back from the WAL at start
    skipped: Counter[str] = field(default_factory=Counter)  # entries not counted, by reason
    bad_streams: Counter[str] = field(default_factory=Counter)  # streams rejected or cut, by reason
    entries_by_node: Counter[str] = field(default_factory=Counter)
    wal_syncs: int = 0
    wal_bytes_written: int = 0
    flushes: int = 0
    flush_failures: int = 0
    last_flush_seconds: float = 0.0
    max_flush_seconds: float = 0.0
    last_flush_records: int = 0
    started_at: float = field(default_factory=time.monotonic)


class Ingestor:
    def __init__(
        self,
        wal_dir: Path,
        sink: Sink,
        sync_interval: float = 0.005,
        flush_interval: float = 0.2,
        max_batch: int = 50_000,
        max_unflushed: int = 500_000,
    ) -> None:
        self.wal_dir = wal_dir
        self.sink = sink
        self.sync_interval = sync_interval
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self.max_unflushed = max_unflushed
        self.metrics = IngestMetrics()
        self.wal: WriteAheadLog | None = None
        self._incoming: list[Record] = []
        self._pending: list[Record] = []  # in the WAL, not yet in the database
        self._wal_lock = asyncio.Lock()
        self._flush_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._flush_now = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._tasks: list[asyncio.Task[None]] = []

    # --- lifecycle --------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.wal = WriteAheadLog(self.wal_dir)
        replayed: list[Record] = []
        for _seq, payload in self.wal.replay():
            replayed.extend(tuple(item) for item in json.loads(payload))  # type: ignore[misc]
        self.wal.open_segment()
        if replayed:
            log.info("usage: replaying %d WAL records", len(replayed))
            self.metrics.replayed += len(replayed)
            self._pending.extend(replayed)
            # Apply before serving; on a database outage the records stay pending (and in the WAL).
            await self.flush()
        self._tasks = [
            asyncio.create_task(self._wal_loop(), name="usage-wal"),
            asyncio.create_task(self._flush_loop(), name="usage-flush"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.sync()
        with contextlib.suppress(Exception):
            await self.flush()
        if self.wal is not None:
            self.wal.close()
            self.wal = None

    # --- hot path -----------------------------------------------------------------------------------------

    async def submit(self, records: list[Record]) -> None:
        """Queues records for the WAL. Waits while too much is unflushed (the database is down or slow),
        so the pressure reaches Envoy's buffer (and its logs_dropped counter) instead of our memory."""
        if not records:
            return
        if len(self._pending) + len(self._incoming) >= self.max_unflushed:
            self._room.clear()
            await self._room.wait()
        self._incoming.extend(records)
        self._wake.set()

    # --- background ---------------------------------------------------------------------------------------

    async def _wal_loop(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.sync_interval)  # gather a group for one fsync
            self._wake.clear()
            await self.sync()

    async def sync(self) -> None:
        """Writes queued records to the WAL (fsync'd); only then are they pending for the database."""
        async with self._wal_lock:
            if not self._incoming or self.wal is None:
                return
            batch, self._incoming = self._incoming, []
            payload = json.dumps(batch, separators=(",", ":")).encode()
            try:
                written = await asyncio.to_thread(self.wal.append, [payload])
            except OSError:
                log.exception("usage: WAL write failed; %d records kept in memory", len(batch))
                self._incoming[:0] = batch
                return
            self.metrics.wal_syncs += 1
            self.metrics.wal_bytes_written += written
            self.metrics.received += len(batch)
            self._pending.extend(batch)
            if len(self._pending) >= self.max_batch:
                self._flush_now.set()

    async def _flush_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_now.wait(), self.flush_interval)
            self._flush_now.clear()
            await self.flush()

    async def flush(self) -> None:
        """Applies every WAL'd record to the database, then drops the WAL segments that held them."""
        async with self._flush_lock:
            async with self._wal_lock:
                if not self._pending or self.wal is None:
                    self._room.set()
                    return
                batch, self._pending = self._pending, []
                closed = self.wal.current
                self.wal.open_segment()
            started = time.monotonic()
            # One transaction per chunk keeps transactions bounded after an outage; a failed chunk
            # and the ones after it stay pending (and their segments stay on disk).
            for offset in range(0, len(batch), self.max_batch):
                try:
                    result = await self.sink(batch[offset : offset + self.max_batch])
                except Exception:
                    self.metrics.flush_failures += 1
                    log.exception(
                        "usage: database flush failed; %d records kept in the WAL", len(batch) - offset
                    )
                    self._pending[:0] = batch[offset:]
                    await asyncio.sleep(min(1.0, self.flush_interval * 5))
                    return
                self.metrics.counted += result.counted
                self.metrics.duplicates += result.duplicates
            elapsed = time.monotonic() - started
            self.wal.remove_through(closed)
            self.metrics.flushes += 1
            self.metrics.last_flush_seconds = elapsed
            self.metrics.max_flush_seconds = max(self.metrics.max_flush_seconds, elapsed)
            self.metrics.last_flush_records = len(batch)
            if len(self._pending) + len(self._incoming) < self.max_unflushed:
                self._room.set()

    def wal_size_bytes(self) -> int:
        return self.wal.size_bytes() if self.wal is not None else 0

    @property
    def unflushed(self) -> int:
        return len(self._pending) + len(self._incoming)

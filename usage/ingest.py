"""From received messages to durable summaries: WAL group commit, then batched database flushes.

"Received" means "reached the WAL". The hot path (`submit()`) only queues a message's own bytes, framed
with its node id and receive time (usage/frames.py); every `sync_interval` the queue is written to the
WAL and fsync'd in one go (group commit). A kill -9 loses at most the messages of that window (a few
ms), which Envoy never got an acknowledgement for anyway. Every `flush_interval` the frames already in
the WAL are classified and applied to the database in one transaction per group (dedupe + additive
upserts), and the WAL segments they came from are deleted. A crash between that commit and the
deletion replays the segments at the next start; the frames yield the same records (classification
depends on the frame alone) and the dedupe rows committed with the counts make the replay count
nothing twice."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, Histogram

from tollway.metrics import component_registry
from usage.aggregate import ApplyResult
from usage.frames import Records, encode, entries_in, records_of
from usage.wal import WriteAheadLog

log = logging.getLogger(__name__)

# Applies a group's records and its frames' skip tallies in one transaction (UsageStore.apply); with
# `with_details`, also `details=` the records' analytics dimensions.
Sink = Callable[..., Awaitable[ApplyResult]]
# Database flush latency buckets (seconds): a healthy flush takes milliseconds, an outage's retry seconds.
FLUSH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Frames classified between two yields to the event loop, so receiving never waits for a whole flush.
_YIELD_EVERY = 32


@dataclass
class IngestMetrics:
    received: int = 0  # entries that reached the WAL
    received_messages: int = 0
    counted: int = 0  # records committed to the database
    duplicates: int = 0  # records the dedupe state refused (replays, repeated request ids)
    replayed: int = 0  # entries read back from the WAL at start
    skipped: Counter[str] = field(default_factory=Counter)  # entries not counted, by reason
    bad_streams: Counter[str] = field(default_factory=Counter)  # streams rejected or cut, by reason
    entries_by_node: Counter[str] = field(default_factory=Counter)
    wal_syncs: int = 0
    wal_bytes_written: int = 0
    wal_write_errors: int = 0
    flushes: int = 0
    flush_failures: int = 0  # database errors: the records stay in the WAL and are retried
    # The component's own registry (the process includes it): the library's histogram lives there.
    registry: CollectorRegistry = field(default_factory=component_registry)
    flush_seconds: Histogram = field(init=False)
    last_flush_seconds: float = 0.0
    max_flush_seconds: float = 0.0
    last_flush_records: int = 0
    started_at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.flush_seconds = Histogram(
            "tollway_usage_flush_seconds",
            "Database flush (batch) latency.",
            buckets=FLUSH_BUCKETS,
            registry=self.registry,
        )


class Ingestor:
    def __init__(
        self,
        wal_dir: Path,
        sink: Sink,
        sync_interval: float = 0.005,
        flush_interval: float = 0.2,
        max_batch: int = 50_000,
        max_unflushed: int = 500_000,
        with_details: bool = False,
    ) -> None:
        self.wal_dir = wal_dir
        self.sink = sink
        self.sync_interval = sync_interval
        self.flush_interval = flush_interval
        self.max_batch = max_batch  # records per database transaction
        self.max_unflushed = max_unflushed  # entries received but not yet in the database
        # The sink also takes each record's analytics dimensions (UsageStore.apply's `details`).
        self.with_details = with_details
        self.metrics = IngestMetrics()
        self.wal: WriteAheadLog | None = None
        self._incoming: list[bytes] = []  # frames not yet in the WAL
        self._incoming_entries = 0
        self._pending: list[bytes] = []  # frames in the WAL, not yet in the database
        self._unflushed = 0  # entries of _incoming and _pending
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
        replayed = 0
        for _seq, payload in self.wal.replay():
            self._pending.append(payload)
            replayed += entries_in(payload)
        self.wal.open_segment()
        if self._pending:
            log.info("usage: replaying %d WAL entries", replayed)
            self.metrics.replayed += replayed
            self._unflushed += replayed
            # Apply before serving; on a database outage the frames stay pending (and in the WAL).
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

    async def submit(self, node_id: str, message: bytes, entries: int) -> None:
        """Queues one serialized StreamAccessLogsMessage for the WAL. Waits while too much is unflushed
        (the database is down or slow), so the pressure reaches Envoy's buffer (and its logs_dropped
        counter) instead of our memory."""
        if self._unflushed >= self.max_unflushed:
            self._room.clear()
            await self._room.wait()
        self._incoming.append(encode(node_id, time.time(), entries, message))
        self._incoming_entries += entries
        self._unflushed += entries
        self._wake.set()

    # --- background ---------------------------------------------------------------------------------------

    async def _wal_loop(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.sync_interval)  # gather a group for one fsync
            self._wake.clear()
            await self.sync()

    async def sync(self) -> None:
        """Writes queued frames to the WAL (fsync'd); only then are they pending for the database."""
        async with self._wal_lock:
            if not self._incoming or self.wal is None:
                return
            batch, self._incoming = self._incoming, []
            entries, self._incoming_entries = self._incoming_entries, 0
            write = asyncio.ensure_future(asyncio.to_thread(self.wal.append, batch))
            try:
                try:
                    written = await asyncio.shield(write)
                except asyncio.CancelledError:
                    # Stopping mid-write: the frames may already be on disk, so they must be pending
                    # (a later flush deletes segments only through what it applied).
                    written = await write
                    self._written(batch, entries, written)
                    raise
            except OSError:
                self.metrics.wal_write_errors += 1
                log.exception("usage: WAL write failed; %d messages kept in memory", len(batch))
                self._incoming[:0] = batch
                self._incoming_entries += entries
                return
            self._written(batch, entries, written)

    def _written(self, batch: list[bytes], entries: int, written: int) -> None:
        self.metrics.wal_syncs += 1
        self.metrics.wal_bytes_written += written
        self.metrics.received += entries
        self.metrics.received_messages += len(batch)
        self._pending.extend(batch)
        if self._unflushed - self._incoming_entries >= self.max_batch:
            self._flush_now.set()

    async def _flush_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_now.wait(), self.flush_interval)
            self._flush_now.clear()
            await self.flush()

    async def flush(self) -> None:
        """Classifies every WAL'd frame and applies the records to the database, then drops the WAL
        segments that held them."""
        async with self._flush_lock:
            async with self._wal_lock:
                if not self._pending or self.wal is None:
                    self._room.set()
                    return
                batch, self._pending = self._pending, []
                closed = self.wal.current
                # Rotation fsyncs the directory: off the event loop, so receiving never waits on the disk.
                await asyncio.to_thread(self.wal.open_segment)
            started = time.monotonic()
            records = 0
            index = 0
            # One transaction per group of about max_batch records keeps transactions bounded after an
            # outage; a failed group and the ones after it stay pending (and their segments on disk).
            # The next group is classified while the database applies this one (pipelined: the CPU
            # work fills the database's I/O waits).
            apply: asyncio.Task[ApplyResult] | None = None
            try:
                group, end = await self._classify(batch, index)
                while group is not None:
                    apply = asyncio.ensure_future(self._apply(group))
                    following = await self._classify(batch, end) if end < len(batch) else (None, end)
                    try:
                        result = await apply
                    except Exception:
                        self.metrics.flush_failures += 1
                        log.exception(
                            "usage: database flush failed; %d messages kept in the WAL", len(batch) - index
                        )
                        self._pending[:0] = batch[index:]
                        index = len(batch)  # back in pending: nothing left for the handler below
                        await asyncio.sleep(min(1.0, self.flush_interval * 5))
                        return
                    # Skips are counted once the group is settled, so a retried group counts them once.
                    self.metrics.counted += result.counted
                    self.metrics.duplicates += result.duplicates
                    self.metrics.skipped.update(group.skipped)
                    self._unflushed -= sum(entries_in(payload) for payload in batch[index:end])
                    records += len(group.records)
                    index = end
                    group, end = following
            except asyncio.CancelledError:
                # Stopping mid-flush: whether or not the group's transaction committed, its frames go
                # back to pending (the dedupe state makes a second apply count nothing twice).
                if apply is not None and not apply.done():
                    apply.cancel()
                self._pending[:0] = batch[index:]
                raise
            elapsed = time.monotonic() - started
            if self.wal is not None:
                removal = asyncio.ensure_future(asyncio.to_thread(self.wal.remove_through, closed))
                try:
                    await asyncio.shield(removal)
                except asyncio.CancelledError:
                    # Stopping mid-removal: stop() returns only once the applied segments are gone,
                    # not with a thread still deleting them behind it.
                    await removal
                    raise
            self.metrics.flushes += 1
            self.metrics.flush_seconds.observe(elapsed)
            self.metrics.last_flush_seconds = elapsed
            self.metrics.max_flush_seconds = max(self.metrics.max_flush_seconds, elapsed)
            self.metrics.last_flush_records = records
            if self._unflushed < self.max_unflushed:
                self._room.set()

    async def _classify(self, batch: list[bytes], start: int) -> tuple[Records | None, int]:
        """The records of frames from `start` on, up to about max_batch records; and where it stopped."""
        group, end = Records(), start
        while end < len(batch) and len(group.records) < self.max_batch:
            records_of(batch[end], group)
            end += 1
            if (end - start) % _YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let the hot path in
        return group, end

    async def _apply(self, group: Records) -> ApplyResult:
        if not group.records and not group.tallies:
            return ApplyResult()
        if self.with_details:
            return await self.sink(group.records, group.tallies, details=group.details)
        return await self.sink(group.records, group.tallies)

    def wal_size_bytes(self) -> int:
        return self.wal.size_bytes() if self.wal is not None else 0

    def wal_segments(self) -> int:
        return len(self.wal.segment_numbers()) if self.wal is not None else 0

    @property
    def unflushed(self) -> int:
        """Entries received (or queued for the WAL) and not yet in the database."""
        return self._unflushed

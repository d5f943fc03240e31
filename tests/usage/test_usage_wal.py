"""The write-ahead log and the ingestor's exactly-once hand-off to the database."""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest

from tests.usage.usage_entries import entry
from tollway.db import Database
from usage.classify import classify
from usage.ingest import Ingestor
from usage.store import ApplyResult, UsageStore
from usage.wal import WalLockedError, WriteAheadLog

T0 = (int(time.time()) // 86400) * 86400 - 3600


def rec(i: int, node: str = "n1"):
    return classify(entry(200, request_id=f"r{i}", start=T0 + 5), node, T0 + 5)


def test_frames_round_trip_and_a_torn_tail_is_dropped(tmp_path) -> None:
    wal = WriteAheadLog(tmp_path)
    wal.open_segment()
    wal.append([b"one", b"two"])
    wal.append([b"three"])
    path = tmp_path / f"{wal.current:012d}.wal"
    wal.close()
    # A crash mid-write: half a frame at the end.
    with open(path, "ab") as handle:
        handle.write(b"\x00\x00\x00\x10\x12")
    reopened = WriteAheadLog(tmp_path)
    assert [p for _, p in reopened.replay()] == [b"one", b"two", b"three"]
    assert reopened.torn_frames == 1
    reopened.close()


def test_corrupt_frame_stops_the_segment_but_not_the_next(tmp_path) -> None:
    wal = WriteAheadLog(tmp_path)
    wal.open_segment()
    wal.append([b"aaaa", b"bbbb"])
    first = tmp_path / f"{wal.current:012d}.wal"
    wal.open_segment()
    wal.append([b"cccc"])
    wal.close()
    data = bytearray(first.read_bytes())
    data[-1] ^= 0xFF  # flip a bit of "bbbb"
    first.write_bytes(bytes(data))
    reopened = WriteAheadLog(tmp_path)
    assert [p for _, p in reopened.replay()] == [b"aaaa", b"cccc"]
    reopened.close()


def test_one_process_per_wal_directory(tmp_path) -> None:
    wal = WriteAheadLog(tmp_path)
    with pytest.raises(WalLockedError):
        WriteAheadLog(tmp_path)
    wal.close()
    WriteAheadLog(tmp_path).close()


async def test_records_reach_the_database_and_the_wal_is_emptied(database: Database, tmp_path) -> None:
    store = UsageStore(database)
    ingestor = Ingestor(tmp_path / "wal", store.apply, sync_interval=0.001, flush_interval=0.02)
    await ingestor.start()
    await ingestor.submit([rec(i) for i in range(100)])
    deadline = time.monotonic() + 5
    while ingestor.metrics.counted < 100 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await ingestor.stop()
    assert ingestor.metrics.received == ingestor.metrics.counted == 100
    [row] = await store.windows("day", *_day())
    assert row["success"] == 100
    assert sum(p.stat().st_size for p in (tmp_path / "wal").glob("*.wal")) == 0


def _day():
    from datetime import UTC, datetime

    start = T0 - T0 % 86400
    return datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(start + 86400, UTC)


async def test_crash_after_commit_before_wal_cleanup_counts_nothing_twice(
    database: Database, tmp_path
) -> None:
    """The window a kill -9 can hit: counts committed, WAL segments not yet deleted. Replay at the next
    start must add nothing; records only in the WAL must be added exactly once."""
    store = UsageStore(database)
    wal_dir = tmp_path / "wal"
    wal = WriteAheadLog(wal_dir)
    wal.open_segment()
    committed = [rec(i) for i in range(60)]
    only_in_wal = [rec(i) for i in range(60, 100)]
    wal.append([json.dumps(committed).encode(), json.dumps(only_in_wal).encode()])
    wal.close()
    await store.apply(committed)  # the flush that committed before the "crash"

    ingestor = Ingestor(wal_dir, store.apply, flush_interval=0.02)
    await ingestor.start()  # replays
    assert ingestor.metrics.replayed == 100
    assert (ingestor.metrics.counted, ingestor.metrics.duplicates) == (40, 60)
    await ingestor.stop()
    [row] = await store.windows("day", *_day())
    assert row["success"] == 100
    # And a second restart replays nothing.
    again = Ingestor(wal_dir, store.apply)
    await again.start()
    assert again.metrics.replayed == 0
    await again.stop()


async def test_database_outage_keeps_records_in_the_wal_and_retries(tmp_path) -> None:
    applied: list = []
    failing = True

    async def sink(batch):
        if failing:
            raise OSError("database down")
        applied.extend(batch)
        return ApplyResult(counted=len(batch))

    ingestor = Ingestor(tmp_path / "wal", sink, sync_interval=0.001, flush_interval=0.01)
    await ingestor.start()
    await ingestor.submit([rec(i) for i in range(10)])
    deadline = time.monotonic() + 5
    while ingestor.metrics.flush_failures == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert ingestor.metrics.flush_failures >= 1
    assert ingestor.wal_size_bytes() > 0  # still durable
    failing = False
    while ingestor.metrics.counted < 10 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await ingestor.stop()
    assert len(applied) == 10
    assert not [p for p in (tmp_path / "wal").glob("*.wal") if p.stat().st_size]
    assert os.path.exists(tmp_path / "wal" / "LOCK")

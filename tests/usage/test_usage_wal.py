"""The write-ahead log and the ingestor's exactly-once hand-off to the database."""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.usage.usage_entries import entry, message
from tollway.db import Database
from usage import frames
from usage.aggregate import ApplyResult
from usage.classify import classify
from usage.ingest import Ingestor
from usage.store import UsageStore
from usage.wal import WalLockedError, WriteAheadLog

T0 = (int(time.time()) // 86400) * 86400 - 3600


def rec(i: int, node: str = "n1"):
    return classify(entry(200, request_id=f"r{i}", start=T0 + 5), node, T0 + 5)


def raw(ids: range, node: str = "n1") -> bytes:
    """One serialized StreamAccessLogsMessage holding an entry per id."""
    return message([entry(200, request_id=f"r{i}", start=T0 + 5) for i in ids], node).SerializeToString()


def frame(ids: range, node: str = "n1") -> bytes:
    """A WAL frame as the hot path writes it."""
    return frames.encode(node, T0 + 5, len(ids), raw(ids, node))


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
    for start in range(0, 100, 25):
        await ingestor.submit("n1", raw(range(start, start + 25)), 25)
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
    wal.append([frame(range(60)), frame(range(60, 100))])
    wal.close()
    await store.apply([rec(i) for i in range(60)])  # the flush that committed before the "crash"

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

    async def sink(batch, tallies):
        if failing:
            raise OSError("database down")
        applied.extend(batch)
        return ApplyResult(counted=len(batch))

    ingestor = Ingestor(tmp_path / "wal", sink, sync_interval=0.001, flush_interval=0.01)
    await ingestor.start()
    await ingestor.submit("n1", raw(range(10)), 10)
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


async def test_frames_written_before_the_raw_format_still_replay(database: Database, tmp_path) -> None:
    """An upgrade: a WAL of JSON record lists (the earlier frame format) is applied once at start."""
    store = UsageStore(database)
    wal = WriteAheadLog(tmp_path / "wal")
    wal.open_segment()
    wal.append([json.dumps([rec(i) for i in range(7)]).encode(), frame(range(7, 10))])
    wal.close()
    ingestor = Ingestor(tmp_path / "wal", store.apply)
    await ingestor.start()
    assert (ingestor.metrics.replayed, ingestor.metrics.counted) == (10, 10)
    await ingestor.stop()


def test_a_frame_yields_the_same_records_whenever_it_is_read() -> None:
    """Classification depends on the frame alone (its receive time, not the clock at replay), so a
    replay after a kill -9 derives exactly the records (and request ids) the first flush derived."""
    payload = frame(range(5))
    first, again = frames.Records(), frames.Records()
    frames.records_of(payload, first)
    frames.records_of(payload, again)
    assert first.records == again.records == [rec(i) for i in range(5)]
    # Received far later, the same entries are too old to count: the receive time decides.
    late = frames.Records()
    frames.records_of(frames.encode("n1", T0 + 90 * 86400, 5, raw(range(5))), late)
    assert not late.records and late.skipped["bad_time"] == 5


def test_a_garbled_entry_is_skipped_and_its_neighbours_counted() -> None:
    good = [entry(200, request_id=f"g{i}", start=T0 + 5).SerializeToString() for i in range(2)]
    skeleton = frames.Skeleton()
    skeleton.http_logs.log_entry.extend([good[0], b"\x0a\xff\xff\xff\xff\x0f", good[1]])
    message_bytes = skeleton.SerializeToString()
    assert frames.inspect(message_bytes).http_entries == 3  # the framing is whole
    out = frames.Records()
    frames.records_of(frames.encode("n1", T0 + 5, 3, message_bytes), out)
    assert [r[1] for r in out.records] == ["g0", "g1"]
    assert out.skipped == {"malformed_entry": 1}


def test_skipped_entries_are_tallied_once_each_under_the_entry_s_own_key() -> None:
    """Every entry of a frame is either a record or a skip tally keyed by the entry (its request id),
    so a replayed frame, or a copy of the entry batched into another frame for a second usage process
    (TOLLWAY_USAGE_COPIES), accounts its skip once (UsageStore.apply claims each key once)."""
    entries = [
        entry(200, request_id="ok", start=T0 + 5),
        entry(404, authz={}, route_name="tollway_not_found", request_id="scan-1", start=T0 + 5),
        entry(404, authz={}, route_name="tollway_not_found", start=T0 + 6),
        entry(200, start=T0 + 5, log_type=5),
    ]
    payload = frames.encode("n1", T0 + 5, len(entries), message(entries, "n1").SerializeToString())
    first, again = frames.Records(), frames.Records()
    frames.records_of(payload, first)
    frames.records_of(payload, again)
    assert dict(first.skipped) == {"unrouted": 2, "not_downstream_end": 1}
    assert sorted(r for t in first.tallies for r in t.reasons) == [
        "not_downstream_end",
        "unrouted",
        "unrouted",
    ]
    assert all(sum(t.reasons.values()) == 1 and t.node_id == "n1" for t in first.tallies)
    assert {t.minute for t in first.tallies} == {(T0 + 5) - (T0 + 5) % 60}
    assert len({t.key for t in first.tallies}) == 3
    assert len(first.records) + len(first.tallies) == len(entries)
    assert again.tallies == first.tallies
    # The same skipped entry in a frame batched differently (another copy): the same key.
    alone = frames.Records()
    single = message([entries[1]], "n1").SerializeToString()
    frames.records_of(frames.encode("n1", T0 + 7, 1, single), alone)
    [copy] = alone.tallies
    assert copy.key in {t.key for t in first.tallies} and copy.key == "skip:scan-1"
    # Nothing skipped: no tally (no dedupe row to write).
    clean = frames.Records()
    frames.records_of(frame(range(3)), clean)
    assert clean.tallies == [] and len(clean.records) == 3


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_refused_or_read_never_crash(data: bytes) -> None:
    try:
        seen = frames.inspect(data)
    except frames.MalformedMessage:
        return
    out = frames.Records()
    frames.records_of(frames.encode("n1", T0 + 5, seen.http_entries, data), out)
    assert len(out.records) + sum(out.skipped.values()) <= seen.http_entries + seen.tcp_entries
    frames.records_of(data, out)  # not even a frame: skipped, never raised
    frames.records_of(b"[" + data, out)  # nor a legacy JSON frame


async def test_a_failed_group_and_those_after_it_are_retried_and_none_applied_twice(tmp_path) -> None:
    """Groups are pipelined (the next one classified while the database applies this one): when a group
    fails, it and every later group go back to pending; the groups before it are not applied again."""
    applied: list[str] = []
    calls = 0

    async def sink(batch, tallies):
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError("database blip")
        applied.extend(record[1] for record in batch)
        return ApplyResult(counted=len(batch))

    ingestor = Ingestor(tmp_path / "wal", sink, sync_interval=0.001, flush_interval=3600, max_batch=10)
    await ingestor.start()
    for start in range(0, 50, 10):
        await ingestor.submit("n1", raw(range(start, start + 10)), 10)
    await ingestor.sync()
    await ingestor.flush()  # group 1 applied, group 2 fails: groups 2..5 stay pending
    assert (ingestor.metrics.counted, ingestor.metrics.flush_failures, ingestor.unflushed) == (10, 1, 40)
    assert ingestor.wal_size_bytes() > 0
    await ingestor.flush()
    assert ingestor.metrics.counted == 50 and ingestor.unflushed == 0
    assert sorted(applied) == sorted(f"r{i}" for i in range(50))  # each once
    await ingestor.stop()
    assert not [p for p in (tmp_path / "wal").glob("*.wal") if p.stat().st_size]


async def test_stop_during_segment_removal_returns_with_the_applied_segments_gone(
    tmp_path, monkeypatch
) -> None:
    """A flush that committed is still deleting its segments (off the event loop) when stop() cancels
    it: stop() must wait for the deletion, not return with a thread still at work behind it."""
    remove_through = WriteAheadLog.remove_through

    def slow_remove_through(self, seq) -> None:
        time.sleep(0.3)
        remove_through(self, seq)

    monkeypatch.setattr(WriteAheadLog, "remove_through", slow_remove_through)

    async def sink(batch, tallies):
        return ApplyResult(counted=len(batch))

    ingestor = Ingestor(tmp_path / "wal", sink, sync_interval=0.001, flush_interval=0.01)
    await ingestor.start()
    await ingestor.submit("n1", raw(range(10)), 10)
    deadline = time.monotonic() + 5
    while ingestor.metrics.counted < 10 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await ingestor.stop()  # the flush is inside the slow removal now
    assert ingestor.metrics.counted == 10
    assert not [p for p in (tmp_path / "wal").glob("*.wal") if p.stat().st_size]

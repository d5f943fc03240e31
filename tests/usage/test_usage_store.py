"""Summaries in SQLite and PostgreSQL: additive upserts, exactly-once dedupe, queries."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from tests.conftest import close_database, open_database
from tests.usage.usage_entries import entry
from tollway.db import Database
from usage.classify import classify
from usage.frames import SkipTally
from usage.store import UsageStore

T0 = (int(time.time()) // 86400) * 86400 - 86400  # yesterday 00:00 UTC
DAY = (datetime.fromtimestamp(T0, UTC), datetime.fromtimestamp(T0 + 86400, UTC))


def record(code: int = 200, node: str = "node-a", start: float = T0 + 30, **fields):
    return classify(entry(code, start=start, **fields), node, start)


async def window_rows(store: UsageStore, granularity: str = "minute"):
    return await store.windows(granularity, *DAY)


async def test_counts_by_class_and_granularity(database: Database) -> None:
    store = UsageStore(database)
    batch = [
        record(200, latency_ms=2),
        record(200, latency_ms=40),
        record(500, start=T0 + 90),
        record(429, flags={"rate_limited": True}, ratelimit={"window": "minute"}),
        record(401, reason="key_invalid", key_id="key_x"),
        record(200, ratelimit={"overage": True}),
    ]
    result = await store.apply(batch)
    assert (result.counted, result.duplicates) == (6, 0)
    minutes = await window_rows(store)
    by_key = {(r["window_start"], r["subscription_id"], r["key_id"]): r for r in minutes}
    first = by_key[(DAY[0], "sub_1", "key_1")]
    assert (first["success"], first["overage"], first["throttled"], first["upstream_fault"]) == (3, 1, 1, 0)
    assert first["latency_us_max"] == 40_000
    assert first["latency_us_sum"] == 2_000 + 40_000 + 3_000 * 2
    second = by_key[(DAY[0] + timedelta(minutes=1), "sub_1", "key_1")]
    assert second["upstream_fault"] == 1
    refused = by_key[(DAY[0], "", "key_x")]
    assert refused["unauthorized"] == 1 and refused["plan_id"] == ""
    # Roll-ups hold the same totals.
    for granularity in ("hour", "day"):
        rows = await window_rows(store, granularity)
        assert sum(r["success"] + r["upstream_fault"] + r["throttled"] + r["unauthorized"] for r in rows) == 6
    throttled = await store.throttled(*DAY)
    assert [(r["limit_name"], r["throttled"]) for r in throttled] == [("minute", 1)]


async def test_upserts_are_additive_and_max_is_kept(database: Database) -> None:
    store = UsageStore(database)
    await store.apply([record(latency_ms=50) for _ in range(3)])
    await store.apply([record(latency_ms=5) for _ in range(4)])
    [row] = [r for r in await window_rows(store, "day")]
    assert row["success"] == 7
    assert row["latency_us_max"] == 50_000
    assert row["request_bytes"] == 7 * 100


async def test_a_replayed_batch_is_counted_once(database: Database) -> None:
    store = UsageStore(database)
    batch = [record(request_id=f"r{i}") for i in range(50)]
    assert (await store.apply(batch)).counted == 50
    again = await store.apply([*batch, record(request_id="new")])
    assert (again.counted, again.duplicates) == (1, 50)
    # Same request id from another node is a different request.
    other = await store.apply([record(node="node-b", request_id="r1")])
    assert other.counted == 1
    # Duplicates inside one batch are counted once too.
    inside = await store.apply([record(request_id="dup"), record(request_id="dup")])
    assert (inside.counted, inside.duplicates) == (1, 1)
    [row] = await window_rows(store, "day")
    assert row["success"] == 53


async def test_totals_top_consumers_and_completeness(database: Database) -> None:
    store = UsageStore(database)
    await store.apply(
        [record(subscription_id="sub_a") for _ in range(5)]
        + [record(subscription_id="sub_b") for _ in range(2)]
        + [record(subscription_id="sub_b", node="node-b") for _ in range(1)]
    )
    totals = await store.totals(*DAY, group_by=("subscription_id",))
    assert {r["subscription_id"]: r["requests"] for r in totals} == {"sub_a": 5, "sub_b": 3}
    top = await store.totals(*DAY, group_by=("subscription_id",), order_by_requests=True, limit=1)
    assert [r["subscription_id"] for r in top] == ["sub_a"]
    # A range that is not day-aligned sums minute windows, with the same answer.
    partial = await store.totals(DAY[0], DAY[0] + timedelta(minutes=5), group_by=())
    assert partial[0]["requests"] == 8

    await store.record_sample("node-a", DAY[0] - timedelta(seconds=1), 100, 0)
    await store.record_sample("node-a", DAY[0] + timedelta(hours=2), 107, 1)
    report = {r["node_id"]: r for r in await store.completeness(*DAY)}
    assert report["node-a"]["received"] == 7
    assert (report["node-a"]["logs_written"], report["node-a"]["logs_dropped"]) == (7, 1)
    assert report["node-a"]["completeness"] == 7 / 8
    assert report["node-b"]["sampled"] is False


async def test_two_writers_on_one_postgres_give_the_same_totals_as_one(tmp_path) -> None:
    """The same entries through one replica (one engine) and through two concurrent replicas (two
    engines on one schema, overlapping windows): identical window tables, no lost update."""
    batches = [
        [
            record(
                node=f"node-{w}",
                request_id=f"{w}-{b}-{i}",
                latency_ms=(i * 7) % 300,
                start=T0 + (i % 5) * 60,
                subscription_id=f"sub_{i % 3}",
                code=(200, 500, 429)[i % 3],
            )
            for i in range(200)
        ]
        for w in range(2)
        for b in range(10)
    ]
    single = await open_database("postgres", tmp_path)
    first = await open_database("postgres", tmp_path)
    second = Database(first.url, first.schema_name)
    try:
        for batch in batches:
            await UsageStore(single).apply(batch)
        stores = [UsageStore(first), UsageStore(second)]
        await asyncio.gather(*(stores[i % 2].apply(batch) for i, batch in enumerate(batches)))
        for granularity in ("minute", "hour", "day"):
            one = await UsageStore(single).windows(granularity, *DAY)
            two = await stores[0].windows(granularity, *DAY)
            assert one == two
        [row] = await stores[1].totals(*DAY, group_by=())
        assert row["requests"] == 2 * 10 * 200
    finally:
        await second.dispose()
        await close_database(first)
        await close_database(single)


async def test_skipped_entries_are_accounted_once_so_a_healthy_node_is_complete(database: Database) -> None:
    """What Envoy wrote = what usage counted + what it skipped for a stated reason: completeness 1.0.
    The tallies commit with the counts and their own dedupe rows, so a replay accounts nothing twice."""
    store = UsageStore(database)
    counted = [record(200, request_id=f"r{i}") for i in range(5)]
    tally = SkipTally("node-a", "skip:frame-1", T0, {"unrouted": 2, "authz_failed": 1})
    result = await store.apply(counted, [tally])
    assert (result.counted, result.skipped) == (5, 3)
    replay = await store.apply(counted, [tally])  # the same frame read again after a crash
    assert (replay.counted, replay.skipped, replay.duplicates) == (0, 0, 5)
    await store.apply([], [SkipTally("node-a", "skip:frame-2", T0 + 60, {"unrouted": 1})])
    written_at = datetime.fromtimestamp(T0 + 3600, UTC)
    await store.record_sample("node-a", written_at, 9, 0)

    [node] = await store.completeness(*DAY)
    assert node["received"] == 5
    assert node["skipped"] == {"unrouted": 3, "authz_failed": 1}
    assert node["accounted"] == 9 and node["logs_written"] == 9
    assert node["completeness"] == 1.0
    # One entry Envoy wrote never arrived: completeness says so.
    await store.record_sample("node-a", written_at + timedelta(minutes=1), 10, 0)
    [node] = await store.completeness(*DAY)
    assert node["accounted"] == 9 and node["completeness"] == 0.9


async def test_copies_applied_by_two_replicas_at_once_count_once(database: Database) -> None:
    """Envoy sends each entry to more than one usage process (TOLLWAY_USAGE_COPIES): two replicas
    applying the same batches at the same moment, on one database, count each entry once, and neither
    fails its flush (a look-up before the insert raced the other's commit on SQLite)."""
    batches = [
        [record(request_id=f"copy-{b}-{i}", start=T0 + (i % 3) * 60) for i in range(50)] for b in range(12)
    ]
    twin = Database(database.url, database.schema_name)
    try:
        stores = [UsageStore(database), UsageStore(twin)]
        results = await asyncio.gather(*(store.apply(batch) for batch in batches for store in stores))
        assert sum(result.counted for result in results) == 12 * 50
        assert sum(result.duplicates for result in results) == 12 * 50
        [row] = await stores[1].totals(*DAY, group_by=())
        assert row["requests"] == 12 * 50
    finally:
        await twin.dispose()

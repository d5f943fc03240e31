"""Usage summaries in the database: additive upserts (many replicas, one database), dedupe state in
the same transaction as the counts it protects, and the queries accounting and support ask."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, and_, delete, func, literal, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import SQLModel

from tollway.db import Database
from tollway.schema_analytics import UsageDetail
from tollway.schema_usage import (
    UsageNodeReceipt,
    UsageNodeSample,
    UsageNodeSkip,
    UsageSeen,
    UsageThrottle,
    UsageWindow,
)
from usage.aggregate import (
    GRANULARITY_SECONDS,
    KEY_COLUMNS,
    SUM_COLUMNS,
    Aggregate,
    ApplyResult,
)
from usage.classify import (
    OUTCOMES,
    R_API,
    R_APP,
    R_LATENCY,
    R_MINUTE,
    R_NODE,
    R_REQ,
    R_SUB,
    Record,
)
from usage.detail_store import DETAIL_KEYS, upsert_details
from usage.details import Detail, DetailAggregate, RouteCap
from usage.frames import SkipTally
from usage.upserts import AdditiveUpsert

DEDUPE_RETENTION_S = 7 * 86400
_THROTTLE_KEYS = ("window_start", "api_id", "subscription_id", "application_id", "plan_id", "limit_name")
_PG_CHUNK = 20_000
# Rows per dedupe insert: SQLite allows 32766 bound parameters per statement (three a row).
_SQLITE_CHUNK = 5_000


def _table(model: type[SQLModel]) -> Table:
    """A table model's Core table, for bulk statements that bypass the ORM."""
    return model.__table__  # type: ignore[attr-defined, no-any-return]  # set by SQLModel at class creation


def _utc(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands DateTime back naive; every Tollway time is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _window_filter(
    table: Any,
    granularity: str,
    start: datetime,
    end: datetime,
    api_id: str,
    application_id: str,
    subscription_id: str,
) -> list[Any]:
    """WHERE conditions of the usage queries: one granularity, [start, end), and the filters given."""
    conditions = [
        table.c.granularity == granularity,
        table.c.window_start >= start,
        table.c.window_start < end,
    ]
    for column, value in (
        ("api_id", api_id),
        ("application_id", application_id),
        ("subscription_id", subscription_id),
    ):
        if value:
            conditions.append(table.c[column] == value)
    return conditions


class UsageStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._insert = postgresql.insert if db.is_postgres else sqlite.insert
        self._last_prune = 0.0
        self._windows_upsert = self._additive_upsert(
            UsageWindow, KEY_COLUMNS, SUM_COLUMNS, greatest=("latency_us_max",)
        )
        self._receipts_upsert = self._additive_upsert(
            UsageNodeReceipt, ("node_id", "window_start"), ("received",)
        )
        self._skips_upsert = self._additive_upsert(
            UsageNodeSkip, ("node_id", "window_start", "reason"), ("skipped",)
        )
        self._throttles_upsert = self._additive_upsert(UsageThrottle, _THROTTLE_KEYS, ("throttled",))
        self._details_upsert = self._additive_upsert(UsageDetail, DETAIL_KEYS, ("requests", "latency_us_sum"))
        # Distinct routes per API counted under their own name (usage/details.py).
        self._routes = RouteCap()

    def _additive_upsert(
        self, model: type[SQLModel], keys: Sequence[str], sums: Sequence[str], greatest: Sequence[str] = ()
    ) -> AdditiveUpsert:
        # Built once: each flush runs the same upserts (usage/upserts.py).
        return AdditiveUpsert(_table(model), keys, sums, greatest, postgres=self.db.is_postgres)

    async def apply(
        self,
        records: Iterable[Record],
        tallies: Iterable[SkipTally] = (),
        details: Mapping[tuple[str, str], Detail] | None = None,
    ) -> ApplyResult:
        """Counts each (node, request id) once, ever, and accounts each frame's skipped entries once:
        the dedupe rows, the counts, the skip tallies (and the records' analytics dimensions, when
        given) commit together."""
        unique: dict[tuple[str, str], Record] = {}
        result = ApplyResult()
        for record in records:
            key = (record[R_NODE], record[R_REQ])
            if key in unique:
                result.duplicates += 1
            else:
                unique[key] = record
        skips = {(tally.node_id, tally.key): tally for tally in tallies if tally.node_id}
        if not unique and not skips:
            return result
        claims = [(r[R_NODE], r[R_REQ], r[R_MINUTE]) for r in unique.values()]
        claims += [(t.node_id, t.key, t.minute) for t in skips.values()]
        claims.sort()
        async with self.db.engine.begin() as conn:
            seen = await self._claim(conn, claims)
            fresh = [record for key, record in unique.items() if key not in seen]
            fresh_skips = [tally for key, tally in skips.items() if key not in seen]
            result.duplicates += len(unique) - len(fresh)
            if not fresh and not fresh_skips:
                return result
            aggregate = Aggregate()
            for record in fresh:
                aggregate.add(record)
            aggregate.roll_up()
            if fresh:
                await self._upsert_windows(conn, aggregate)
                await self._upsert_receipts(conn, aggregate)
                await self._upsert_throttles(conn, aggregate)
                if details:
                    await upsert_details(conn, self._details(fresh, details), self._details_upsert)
            if fresh_skips:
                result.skipped = await self._upsert_skips(conn, fresh_skips)
            result.counted = len(fresh)
            await self._maybe_prune(conn)
        return result

    def _details(self, fresh: list[Record], details: Mapping[tuple[str, str], Detail]) -> DetailAggregate:
        aggregate = DetailAggregate()
        for record in fresh:
            detail = details.get((record[R_NODE], record[R_REQ]))
            if detail is not None:
                aggregate.add(record[R_MINUTE], record[R_API], record[R_SUB], record[R_APP], detail,
                              record[R_LATENCY], self._routes)  # fmt: skip
        return aggregate

    async def _claim(self, conn: Any, records: list[tuple[str, str, int]]) -> set[tuple[str, str]]:
        """Inserts the dedupe rows of (node, request id, minute) triples; returns the (node, request id)
        pairs that were there already. One statement per chunk; what comes back is the duplicates only
        (usually none: every row fresh, or after a replay or another replica's copy, every row seen),
        so the database, not Python, walks the rows."""
        seen: set[tuple[str, str]] = set()
        if self.db.is_postgres:
            statement = text(
                "WITH batch AS (SELECT * FROM unnest(CAST(:nodes AS text[]), CAST(:ids AS text[]), "
                "CAST(:minutes AS bigint[])) AS b (node_id, request_id, minute)), "
                "inserted AS (INSERT INTO usage_seen (node_id, request_id, minute) "
                "SELECT node_id, request_id, minute FROM batch "
                "ON CONFLICT DO NOTHING RETURNING node_id, request_id) "
                "SELECT node_id, request_id FROM batch EXCEPT ALL SELECT node_id, request_id FROM inserted"
            )
            for start in range(0, len(records), _PG_CHUNK):
                chunk = records[start : start + _PG_CHUNK]
                rows = await conn.execute(
                    statement,
                    {
                        "nodes": [r[0] for r in chunk],
                        "ids": [r[1] for r in chunk],
                        "minutes": [r[2] for r in chunk],
                    },
                )
                seen.update((node, request_id) for node, request_id in rows)
            return seen
        # SQLite: the same in one statement per chunk (RETURNING, SQLite 3.35+): the rows inserted come
        # back and the rest were seen. A look-up before the insert would race another process's commit
        # in between (pysqlite opens the transaction only at the first write), failing the flush.
        for start in range(0, len(records), _SQLITE_CHUNK):
            chunk = records[start : start + _SQLITE_CHUNK]
            # Straight to the driver: one dedupe row per entry, so SQLAlchemy's per-row work would cost
            # more than SQLite's.
            rows = await conn.exec_driver_sql(
                f"INSERT INTO {_table(UsageSeen).name} (node_id, request_id, minute) VALUES "
                + ", ".join(["(?, ?, ?)"] * len(chunk))
                + " ON CONFLICT DO NOTHING RETURNING node_id, request_id",
                tuple(value for record in chunk for value in record),
            )
            inserted = {(node, request_id) for node, request_id in rows}
            seen.update(pair for pair in ((r[0], r[1]) for r in chunk) if pair not in inserted)
        return seen

    async def _upsert_windows(self, conn: Any, aggregate: Aggregate) -> None:
        rows = []
        # A fixed order of row locks: two replicas upserting the same windows cannot deadlock.
        for key in sorted(aggregate.windows, key=lambda k: (k[0], k[1], *k[2:])):
            row = dict(zip(KEY_COLUMNS, key, strict=True))
            row["window_start"] = _utc(key[1])
            row.update(zip(SUM_COLUMNS, aggregate.windows[key], strict=True))
            row["latency_us_max"] = aggregate.latency_max[key]
            rows.append(row)
        await self._windows_upsert.execute(conn, rows)

    async def _upsert_receipts(self, conn: Any, aggregate: Aggregate) -> None:
        rows = [
            {"node_id": node, "window_start": _utc(hour), "received": count}
            for (node, hour), count in sorted(aggregate.receipts.items())
        ]
        await self._receipts_upsert.execute(conn, rows)

    async def _upsert_skips(self, conn: Any, tallies: list[SkipTally]) -> int:
        """Adds the tallies to the per node, hour and reason skip counts; returns the entries added."""
        totals: dict[tuple[str, int, str], int] = defaultdict(int)
        for tally in tallies:
            hour = tally.minute - tally.minute % 3600
            for reason, count in tally.reasons.items():
                totals[(tally.node_id, hour, reason)] += count
        rows = [
            {"node_id": node, "window_start": _utc(hour), "reason": reason, "skipped": count}
            for (node, hour, reason), count in sorted(totals.items())
        ]
        await self._skips_upsert.execute(conn, rows)
        return sum(totals.values())

    async def _upsert_throttles(self, conn: Any, aggregate: Aggregate) -> None:
        if not aggregate.throttles:
            return
        rows = []
        for key, count in sorted(aggregate.throttles.items()):
            row = dict(zip(_THROTTLE_KEYS, key, strict=True))
            row["window_start"] = _utc(key[0])
            row["throttled"] = count
            rows.append(row)
        await self._throttles_upsert.execute(conn, rows)

    async def _maybe_prune(self, conn: Any) -> None:
        now = time.time()
        if now - self._last_prune < 3600:
            return
        self._last_prune = now
        table = _table(UsageSeen)
        await conn.execute(delete(table).where(table.c.minute < int(now) - DEDUPE_RETENTION_S))

    # --- completeness ---------------------------------------------------------------------------------

    async def record_sample(self, node_id: str, at: datetime, written: int, dropped: int) -> None:
        table = _table(UsageNodeSample)
        async with self.db.engine.begin() as conn:
            await conn.execute(
                self._insert(table).on_conflict_do_nothing(),
                [{"node_id": node_id, "sampled_at": at, "logs_written": written, "logs_dropped": dropped}],
            )

    async def completeness(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Per Envoy node over [start, end): entries accounted for (counted, or skipped for a stated
        reason) vs. what Envoy says it wrote and dropped.

        Envoy's counters are cumulative since it started; increases between consecutive samples are
        summed (a decrease means Envoy restarted, so the later reading itself is the increase)."""
        receipts = _table(UsageNodeReceipt)
        skips = _table(UsageNodeSkip)
        samples = _table(UsageNodeSample)
        hour_start = _utc(int(start.timestamp()) - int(start.timestamp()) % 3600)
        async with self.db.engine.connect() as conn:
            received_rows = await conn.execute(
                select(receipts.c.node_id, func.sum(receipts.c.received))
                .where(receipts.c.window_start >= hour_start, receipts.c.window_start < end)
                .group_by(receipts.c.node_id)
            )
            received = {node: int(total or 0) for node, total in received_rows}
            skip_rows = await conn.execute(
                select(skips.c.node_id, skips.c.reason, func.sum(skips.c.skipped))
                .where(skips.c.window_start >= hour_start, skips.c.window_start < end)
                .group_by(skips.c.node_id, skips.c.reason)
            )
            skipped: dict[str, dict[str, int]] = defaultdict(dict)
            for node, reason, total in skip_rows:
                skipped[node][reason] = int(total or 0)
            sample_rows = await conn.execute(
                select(
                    samples.c.node_id, samples.c.sampled_at, samples.c.logs_written, samples.c.logs_dropped
                )
                .where(samples.c.sampled_at < end)
                .order_by(samples.c.node_id, samples.c.sampled_at)
            )
            series: dict[str, list[tuple[datetime, int, int]]] = defaultdict(list)
            for node, at, written, dropped in sample_rows:
                series[node].append((as_utc(at), int(written), int(dropped)))
        report = []
        for node in sorted(set(received) | set(skipped) | set(series)):
            written = dropped = 0
            previous: tuple[datetime, int, int] | None = None
            for point in series.get(node, []):
                if point[0] > start:
                    if previous is None:
                        # No reading before the range: Envoy's counters run from its start, so the first
                        # reading counts whole. That may include entries from before the range (the
                        # report then errs towards "incomplete"), never fewer than were received.
                        written, dropped = point[1], point[2]
                    else:
                        written += point[1] - previous[1] if point[1] >= previous[1] else point[1]
                        dropped += point[2] - previous[2] if point[2] >= previous[2] else point[2]
                previous = point
            got = received.get(node, 0)
            reasons = skipped.get(node, {})
            accounted = got + sum(reasons.values())
            expected = max(written + dropped, accounted)
            report.append(
                {
                    "node_id": node,
                    "received": got,
                    "logs_written": written,
                    "logs_dropped": dropped,
                    "completeness": (accounted / expected) if expected else 1.0,
                    "sampled": bool(series.get(node)),
                    "skipped": reasons,
                    "accounted": accounted,
                }
            )
        return report

    # --- queries ----------------------------------------------------------------------------------------

    async def windows(
        self,
        granularity: str,
        start: datetime,
        end: datetime,
        api_id: str = "",
        application_id: str = "",
        subscription_id: str = "",
        limit: int = 1000,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        table = _table(UsageWindow)
        conditions = _window_filter(table, granularity, start, end, api_id, application_id, subscription_id)
        statement = (
            select(table)
            .where(and_(*conditions))
            .order_by(*(table.c[name] for name in KEY_COLUMNS[1:]))
            .limit(limit)
            .offset(offset)
        )
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(statement)).mappings().all()
        return [{**row, "window_start": as_utc(row["window_start"])} for row in rows]

    async def totals(
        self,
        start: datetime,
        end: datetime,
        group_by: tuple[str, ...],
        api_id: str = "",
        application_id: str = "",
        subscription_id: str = "",
        order_by_requests: bool = False,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Sums over [start, end) from the finest windows that tile it (minutes), grouped by columns."""
        table = _table(UsageWindow)
        granularity = _granularity_for(start, end)
        conditions = _window_filter(table, granularity, start, end, api_id, application_id, subscription_id)
        sums = [func.sum(table.c[name]).label(name) for name in SUM_COLUMNS]
        requests = sum((func.sum(table.c[name]) for name in OUTCOMES), start=literal(0)).label("requests")
        groups = [table.c[name] for name in group_by]
        statement = select(*groups, *sums, func.max(table.c.latency_us_max).label("latency_us_max"), requests)
        statement = statement.where(and_(*conditions))
        if groups:
            statement = statement.group_by(*groups)
        if order_by_requests:
            statement = statement.order_by(requests.desc(), *groups)
        elif groups:
            statement = statement.order_by(*groups)
        statement = statement.limit(limit)
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(statement)).mappings().all()
        return [{name: (0 if value is None else value) for name, value in row.items()} for row in rows]

    async def throttled(
        self, start: datetime, end: datetime, api_id: str = "", subscription_id: str = "", limit: int = 1000
    ) -> list[dict[str, Any]]:
        table = _table(UsageThrottle)
        conditions = [table.c.window_start >= start, table.c.window_start < end]
        if api_id:
            conditions.append(table.c.api_id == api_id)
        if subscription_id:
            conditions.append(table.c.subscription_id == subscription_id)
        statement = select(table).where(and_(*conditions)).order_by(table.c.window_start).limit(limit)
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(statement)).mappings().all()
        return [{**row, "window_start": as_utc(row["window_start"])} for row in rows]


def _granularity_for(start: datetime, end: datetime) -> str:
    """The coarsest granularity whose windows tile [start, end) exactly (fewest rows to sum)."""
    for granularity in ("day", "hour"):
        seconds = GRANULARITY_SECONDS[granularity]
        if int(start.timestamp()) % seconds == 0 and int(end.timestamp()) % seconds == 0:
            return granularity
    return "minute"

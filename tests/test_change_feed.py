"""The change log and the change feed (tollway/change_log.py, tollway/changes.py) on SQLite and
PostgreSQL: what a write records and in which order, listeners that follow only their topics, fail on
their own and catch up, full loads after pruning, LISTEN that reconnects, xds that a new key leaves
alone, and health that says NOT_SERVING until the first load."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text
from sqlmodel import col, select

from tests.conftest import close_database, open_database
from tests.e2e.harness import free_port
from tests.support import EnvoyCredential
from tests.throttle.throttle_fixtures import unique
from throttle.store import TrafficLimitDraft, TrafficLimitStore
from tollway import schema
from tollway.app.runner import TollwayProcess
from tollway.catalog.limits import PlanLimits
from tollway.catalog.store import CatalogStore
from tollway.catalog.validation import PlanDraft
from tollway.change_log import Change, Op, Topic
from tollway.changes import ChangeFeed, ChangeListener
from tollway.db import Database
from tollway.settings import Settings
from xds.process import Xds

AUTHORIZATION = "envoy.service.auth.v3.Authorization"
RATE_LIMIT = "envoy.service.ratelimit.v3.RateLimitService"
QUOTA = "tollway.throttle.v1.QuotaService"


@dataclass
class Recorder:
    """A listener that records what it is given, and fails while told to."""

    name: str
    topics: frozenset[Topic]
    loads: int = 0
    received: list[Change] = field(default_factory=list)
    failing: bool = False

    async def load_all(self) -> None:
        if self.failing:
            raise RuntimeError("listener down")
        self.loads += 1

    async def apply(self, changes: Sequence[Change]) -> None:
        if self.failing:
            raise RuntimeError("listener down")
        self.received += changes


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def logged(db: Database, after: int = 0) -> list[schema.ChangeLogEntry]:
    entry = schema.ChangeLogEntry
    async with db.session() as session:
        return list(await session.exec(select(entry).where(col(entry.seq) > after).order_by(col(entry.seq))))


async def add_application(db: Database) -> str:
    app_id = schema.new_id("app")
    async with db.session() as session:
        session.add(schema.Application(id=app_id, name=unique("app")))
        await session.commit()
    return app_id


# --- the change log ---------------------------------------------------------------------------------


async def test_writes_record_their_entities_in_sequence(database: Database) -> None:
    catalog = CatalogStore(database, lambda: None)
    limits = TrafficLimitStore(database)
    start = max((e.seq or 0 for e in await logged(database)), default=0)

    plan = await catalog.create_plan(PlanDraft(name=unique("plan"), limits=PlanLimits(requests_per_minute=1)))
    await catalog.update_plan(plan.id, PlanDraft(limits=PlanLimits(requests_per_minute=2)), ("limits",))
    await catalog.delete_plan(plan.id)
    app_id = await add_application(database)
    await limits.set(TrafficLimitDraft("APPLICATION", app_id, requests_per_second=3))
    await limits.delete("APPLICATION", app_id)

    entries = await logged(database, start)
    assert [(e.topic, e.entity_id, e.op) for e in entries] == [
        (Topic.PLANS, plan.id, Op.UPSERT),
        (Topic.PLANS, plan.id, Op.UPSERT),
        (Topic.PLANS, plan.id, Op.DELETE),
        (Topic.APPLICATIONS, app_id, Op.UPSERT),
        (Topic.TRAFFIC_LIMITS, f"APPLICATION:{app_id}", Op.UPSERT),
        (Topic.TRAFFIC_LIMITS, f"APPLICATION:{app_id}", Op.DELETE),
    ]
    seqs = [e.seq or 0 for e in entries]
    assert seqs == sorted(set(seqs))


@pytest.mark.postgres
async def test_sequence_numbers_follow_commit_order_of_concurrent_writers(tmp_path: Path) -> None:
    db = await open_database("postgres", tmp_path)
    committed: list[str] = []

    async def writer(app_id: str, linger: float) -> None:
        async with db.session() as session:
            session.add(schema.Application(id=app_id, name=unique("app")))
            await session.flush()  # its change-log row, under the revision lock
            await asyncio.sleep(linger)
            await session.commit()
        committed.append(app_id)

    try:
        apps = [schema.new_id("app") for _ in range(6)]
        # The first writers linger longest: without the lock, later ones would commit first.
        await asyncio.gather(*(writer(app_id, 0.05 * (6 - i)) for i, app_id in enumerate(apps)))
        seq_of = {e.entity_id: e.seq or 0 for e in await logged(db)}
        in_commit_order = [seq_of[app_id] for app_id in committed]
        assert len(set(in_commit_order)) == len(apps)
        assert in_commit_order == sorted(in_commit_order)
    finally:
        await close_database(db)


# --- following --------------------------------------------------------------------------------------


@pytest.fixture
async def feed(database: Database) -> AsyncIterator[ChangeFeed]:
    changes = ChangeFeed(database, poll_seconds=0.05, retention_seconds=3600)
    yield changes
    await changes.stop()


async def test_a_listener_receives_only_its_topics(database: Database, feed: ChangeFeed) -> None:
    plans = Recorder("plans", frozenset({Topic.PLANS}))
    applications = Recorder("applications", frozenset({Topic.APPLICATIONS}))
    feed.subscribe(plans)
    feed.subscribe(applications)
    await feed.start()
    plan = await CatalogStore(database, feed.committed).create_plan(PlanDraft(name=unique("plan")))
    app_id = await add_application(database)
    feed.committed()
    await eventually(lambda: bool(plans.received) and bool(applications.received))
    await asyncio.sleep(0.2)  # a few more polls: nothing else arrives
    assert [(c.topic, c.entity_id) for c in plans.received] == [(Topic.PLANS, plan.id)]
    assert [(c.topic, c.entity_id) for c in applications.received] == [(Topic.APPLICATIONS, app_id)]
    assert (plans.loads, applications.loads) == (1, 1)


async def test_a_failing_listener_holds_back_no_other_and_catches_up(
    database: Database, feed: ChangeFeed
) -> None:
    failing = Recorder("failing", frozenset({Topic.APPLICATIONS}))
    healthy = Recorder("healthy", frozenset({Topic.APPLICATIONS}))
    feed.subscribe(failing)
    feed.subscribe(healthy)
    await feed.start()
    failing.failing = True
    app_id = await add_application(database)
    feed.committed()
    await eventually(lambda: [c.entity_id for c in healthy.received] == [app_id])
    await eventually(lambda: feed.stats()["failing"]["failures"] > 0)
    assert failing.received == []

    failing.failing = False
    await eventually(lambda: [c.entity_id for c in failing.received] == [app_id])
    assert feed.positions()["failing"] == feed.positions()["healthy"]
    assert failing.loads == 1  # caught up from the log, not by loading again


async def test_pruning_past_a_listener_makes_it_load_in_full(database: Database, feed: ChangeFeed) -> None:
    listener = Recorder("replica", frozenset({Topic.APPLICATIONS}))
    feed.subscribe(listener)
    await feed.start()
    # Down, then back: what it missed is still in the log, so it applies it.
    await feed.stop()
    missed = await add_application(database)
    await feed.start()
    assert ([c.entity_id for c in listener.received], listener.loads) == ([missed], 1)

    # Down while the log is pruned past its position: it loads in full, and follows the log after.
    await feed.stop()
    await add_application(database)
    await add_application(database)
    assert await ChangeFeed(database, retention_seconds=0).prune() > 0
    await feed.start()
    assert ([c.entity_id for c in listener.received], listener.loads) == ([missed], 2)
    assert feed.stats()["replica"]["full_loads"] == 2
    later = await add_application(database)
    feed.committed()
    await eventually(lambda: [c.entity_id for c in listener.received] == [missed, later])


async def _listen_pids(db: Database) -> list[int]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE query = :query"),
            {"query": f'LISTEN "{db.notify_channel}"'},
        )
        return [int(row[0]) for row in rows]


@pytest.mark.postgres
async def test_listen_reconnects_after_its_connection_is_killed(tmp_path: Path) -> None:
    db = await open_database("postgres", tmp_path)
    # Polling once a minute: only NOTIFY can deliver within the test's seconds.
    changes = ChangeFeed(db, poll_seconds=60)
    recorder = Recorder("apps", frozenset({Topic.APPLICATIONS}))
    changes.subscribe(recorder)
    try:
        await changes.start()
        first = await add_application(db)  # committed elsewhere: no `committed()` call
        await eventually(lambda: [c.entity_id for c in recorder.received] == [first])

        (pid,) = await _listen_pids(db)
        async with db.engine.connect() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        deadline = time.monotonic() + 10
        while (pids := await _listen_pids(db)) in ([], [pid]):
            assert time.monotonic() < deadline, "LISTEN did not reconnect"
            await asyncio.sleep(0.1)
        assert pid not in pids

        second = await add_application(db)
        await eventually(lambda: [c.entity_id for c in recorder.received] == [first, second])
    finally:
        await changes.stop()
        await close_database(db)


async def test_the_poll_slows_to_the_listen_check_only_while_listen_is_up(tmp_path: Path) -> None:
    db = await open_database("postgres", tmp_path)
    changes = ChangeFeed(db, poll_seconds=0.25)
    changes.subscribe(Recorder("apps", frozenset({Topic.APPLICATIONS})))
    try:
        await changes.start()
        await eventually(lambda: changes.poll_interval() == 1.0)
        # LISTEN lost: the poll is the only source of other replicas' changes again, at full rate.
        changes._pg_conn.terminate()
        assert changes.poll_interval() == 0.25
        # Reconnected by the health check, the poll slows down again.
        await eventually(lambda: changes.poll_interval() == 1.0, timeout=10)
    finally:
        await changes.stop()
        await close_database(db)


async def test_without_listen_the_poll_keeps_its_interval(tmp_path: Path) -> None:
    db = await open_database("sqlite", tmp_path)  # SQLite has no LISTEN
    changes = ChangeFeed(db, poll_seconds=0.25)
    changes.subscribe(Recorder("apps", frozenset({Topic.APPLICATIONS})))
    try:
        await changes.start()
        assert changes.poll_interval() == 0.25
    finally:
        await changes.stop()
        await close_database(db)


# --- a whole process --------------------------------------------------------------------------------


def process_settings(tmp_path: Path, *components: str) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'tollway.db'}",
        components=components,
        grpc_addr=f"127.0.0.1:{free_port()}",
        admin_addr=f"127.0.0.1:{free_port()}",
        change_poll_seconds=0.05,
    ).resolved()


async def test_a_new_key_rebuilds_no_envoy_configuration_a_catalog_change_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    process = TollwayProcess(process_settings(tmp_path, "keymgr", "xds", "admin"))
    xds = process.find(Xds)
    assert xds is not None
    pushes: list[float] = []
    real_push = xds.push

    async def counted_push() -> None:
        pushes.append(time.monotonic())
        await real_push()

    monkeypatch.setattr(xds, "push", counted_push)
    await process.start()
    try:
        assert len(pushes) == 1  # the first load

        async def settled() -> None:
            head = max((e.seq or 0 for e in await logged(process.db)), default=0)
            process.changes.committed()
            await eventually(lambda: min(process.changes.positions().values()) >= head)

        app_id = await add_application(process.db)
        async with process.db.session() as session:
            session.add(schema.ApiKey(key_id=schema.new_id("key"), application_id=app_id, key_hash="0" * 64))
            await session.commit()
        await settled()
        assert (
            process.changes.stats()["keymgr"]["full_loads"] + process.changes.stats()["keymgr"]["applied"] > 1
        )
        assert len(pushes) == 1

        await process.catalog.create_plan(PlanDraft(name=unique("plan")))
        await settled()
        assert len(pushes) == 2
    finally:
        await process.stop()


@dataclass
class HeldLoad:
    """Wraps a listener so that its first load waits until released."""

    listener: ChangeListener
    release: asyncio.Event

    @property
    def name(self) -> str:
        return self.listener.name

    @property
    def topics(self) -> frozenset[Topic]:
        return self.listener.topics

    async def load_all(self) -> None:
        await self.release.wait()
        await self.listener.load_all()

    async def apply(self, changes: Sequence[Change]) -> None:
        await self.listener.apply(changes)


async def health_of(address: str, service: str, settings: Settings | None = None) -> int:
    """The health status of `service`; with `settings`, over the Envoy-facing port's credential."""
    envoy = EnvoyCredential(settings) if settings else None
    async with envoy.aio_channel(address) if envoy else grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        return int(response.status)


async def test_health_is_not_serving_until_the_first_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = process_settings(tmp_path, "keymgr", "throttle")
    process = TollwayProcess(settings)
    release = asyncio.Event()
    subscribe = process.changes.subscribe
    monkeypatch.setattr(process.changes, "subscribe", lambda listener: subscribe(HeldLoad(listener, release)))
    starting = asyncio.create_task(process.start())
    try:
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        deadline = time.monotonic() + 10
        while True:  # the servers listen before the views are loaded
            try:
                status = await health_of(settings.grpc_addr, "", settings)
                break
            except grpc.aio.AioRpcError:
                assert time.monotonic() < deadline, "the server did not start listening"
                await asyncio.sleep(0.05)
        assert status == not_serving
        for service in (AUTHORIZATION, RATE_LIMIT):
            assert await health_of(settings.grpc_addr, service, settings) == not_serving
        assert await health_of(settings.admin_addr, QUOTA) == not_serving
        assert not starting.done()

        release.set()
        await asyncio.wait_for(starting, 10)
        serving = health_pb2.HealthCheckResponse.SERVING
        for service in ("", AUTHORIZATION, RATE_LIMIT):
            assert await health_of(settings.grpc_addr, service, settings) == serving
        assert await health_of(settings.admin_addr, QUOTA) == serving
    finally:
        release.set()
        if not starting.done():
            starting.cancel()
        await process.stop()

"""Measures the key index's memory: N applications, subscriptions and keys bulk-inserted into a temporary
SQLite database, loaded with `load_snapshot`, measured with tracemalloc and RSS. Not a test (it takes a
while at scale); run it by hand and keep keymgr/snapshot.py's figures current:

    .venv/bin/python tests/keymgr/measure_index_memory.py 100000
"""

from __future__ import annotations

import asyncio
import gc
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from sqlalchemy import insert

from keymgr.index import load_snapshot
from keymgr.keys import key_hash, new_key_id
from tollway import schema
from tollway.db import Database

_CHUNK = 10_000
_API, _PLAN = "api_weather", "plan_gold"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def populate(db: Database, n: int) -> None:
    async with db.session() as session:
        session.add(schema.Plan(id=_PLAN, name="gold"))
        session.add(schema.Api(id=_API, name="weather", context_path="/w/v1", published=True))
        await session.commit()
    for start in range(0, n, _CHUNK):
        count = min(_CHUNK, n - start)
        app_ids = [schema.new_id("app") for _ in range(count)]
        apps = [schema.Application(id=app_id, name=app_id) for app_id in app_ids]
        subs = [
            schema.Subscription(id=schema.new_id("sub"), application_id=app_id, api_id=_API, plan_id=_PLAN)
            for app_id in app_ids
        ]
        keys = [
            schema.ApiKey(key_id=new_key_id(), application_id=app_id, key_hash=key_hash("s", app_id))
            for app_id in app_ids
        ]
        async with db.engine.begin() as connection:
            for rows in (apps, subs, keys):
                table = type(rows[0]).__table__  # type: ignore[attr-defined]
                await connection.execute(insert(table), [row.model_dump() for row in rows])


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        db = Database(f"sqlite:///{Path(directory) / 'scale.db'}")
        await db.create_schema()
        await populate(db, n)
        gc.collect()
        before_rss = rss_mb()
        started = time.perf_counter()
        untraced = await load_snapshot(db)
        seconds = time.perf_counter() - started
        gc.collect()
        after_rss = rss_mb()
        assert len(untraced.keys) == len(untraced.subscriptions) == len(untraced.applications) == n
        del untraced
        gc.collect()
        tracemalloc.start()
        snapshot = await load_snapshot(db)
        gc.collect()
        held, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del snapshot
        print(
            f"{n} keys + applications + subscriptions: load {seconds:.2f}s, "
            f"RSS {before_rss:.0f} -> {after_rss:.0f} MB"
        )
        print(
            f"index {held / 1e6:.1f} MB ({held / n:.0f} bytes per key with its application and subscription)"
        )
        print(f"peak while loading {peak / 1e6:.1f} MB")
        await db.dispose()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))

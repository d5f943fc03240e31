"""Additive upserts of usage's summary rows: INSERT … ON CONFLICT (keys) DO UPDATE adding the sums.

Every flush runs the same few, so each is built once per store. On PostgreSQL it is one statement over
arrays, one per column (`INSERT … SELECT * FROM unnest(…)`), the way the dedupe claim already was: an
executemany through SQLAlchemy spent about 10 µs of Python per row building its parameters (cProfile of
`bench/ingest_bench.py --db postgres`: the summarizing's largest single cost after classification).
SQLite keeps SQLAlchemy Core's executemany. Rows go in the order given, sorted by the caller, so two
replicas upserting the same windows take their row locks in one order and cannot deadlock."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, func, text
from sqlalchemy.dialects import postgresql, sqlite

_POSTGRES = postgresql.dialect()  # type: ignore[no-untyped-call]  # untyped upstream


class AdditiveUpsert:
    """Adds rows (dicts holding every one of `keys`, `sums` and `greatest`) to `table`: a new key is
    inserted, an existing one gets the sums added and keeps the larger of each `greatest`."""

    def __init__(
        self,
        table: Table,
        keys: Sequence[str],
        sums: Sequence[str],
        greatest: Sequence[str] = (),
        *,
        postgres: bool,
    ) -> None:
        self.columns = (*keys, *sums, *greatest)
        self._postgres = postgres
        if postgres:
            # Names from the schema, never from data; the values travel as bound arrays.
            arrays = ", ".join(
                f"CAST(:{name} AS {table.c[name].type.compile(dialect=_POSTGRES)}[])" for name in self.columns
            )
            updates = [f"{name} = {table.name}.{name} + excluded.{name}" for name in sums]
            updates += [f"{name} = GREATEST({table.name}.{name}, excluded.{name})" for name in greatest]
            self._statement: Any = text(
                f"INSERT INTO {table.name} ({', '.join(self.columns)}) SELECT * FROM unnest({arrays}) "
                f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {', '.join(updates)}"
            )
        else:
            insert = sqlite.insert(table)
            set_ = {name: table.c[name] + insert.excluded[name] for name in sums}
            set_.update({name: func.max(table.c[name], insert.excluded[name]) for name in greatest})
            self._statement = insert.on_conflict_do_update(index_elements=list(keys), set_=set_)

    async def execute(self, conn: Any, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if self._postgres:
            await conn.execute(self._statement, {name: [row[name] for row in rows] for name in self.columns})
        else:
            await conn.execute(self._statement, rows)

"""Counter stores: one atomic, all-or-nothing check-and-increment over all windows of a request.

A request is admitted only when every hard window has room for its hits; then every window (hard,
soft and count-only) is incremented. A denied request increments nothing, so a burst limit never eats
the monthly quota. In shadow mode (`enforce=False`) windows are incremented even when one is exceeded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from throttle.limits import Window, ttl_seconds


class StoreUnavailable(Exception):
    """The counters could not be reached in time; the caller applies the configured failure mode."""


@dataclass(frozen=True, slots=True)
class HitResult:
    admitted: bool
    # Index into the windows of the first hard window the hits did not fit in, or -1.
    exceeded: int
    # Each window's count after the step (unchanged when not admitted).
    counts: tuple[int, ...]


class CounterStore(Protocol):
    async def hit(
        self, windows: Sequence[Window], hits: int, now: datetime, enforce: bool = True
    ) -> HitResult: ...

    async def read(self, keys: Sequence[str], now: datetime) -> list[int]: ...

    async def close(self) -> None: ...


def decide(windows: Sequence[Window], current: Sequence[int], hits: int) -> int:
    """Index of the first hard window that cannot take `hits` more, or -1. Shared by both stores (the
    Lua script mirrors it)."""
    for index, window in enumerate(windows):
        if window.hard and window.limit > 0 and current[index] + hits > window.limit:
            return index
    return -1


class MemoryCounterStore:
    """In-process counters for a single replica. Each `hit` runs without awaiting, so on the event
    loop it is atomic with respect to every other request."""

    # Expired counters are swept after this many new keys.
    _SWEEP_EVERY = 10_000

    def __init__(self) -> None:
        # key → (count, expiry as POSIX seconds)
        self._counters: dict[str, tuple[int, float]] = {}
        self._inserted = 0

    def _get(self, key: str, now_ts: float) -> int:
        entry = self._counters.get(key)
        if entry is None or entry[1] <= now_ts:
            return 0
        return entry[0]

    async def hit(
        self, windows: Sequence[Window], hits: int, now: datetime, enforce: bool = True
    ) -> HitResult:
        now_ts = now.timestamp()
        counters = self._counters
        entries = [counters.get(w.key) for w in windows]
        current = [0 if e is None or e[1] <= now_ts else e[0] for e in entries]
        exceeded = decide(windows, current, hits)
        if exceeded >= 0 and enforce:
            return HitResult(False, exceeded, tuple(current))
        counts = []
        for window, value, entry in zip(windows, current, entries, strict=True):
            if value == 0:
                self._inserted += 1
                expiry = now_ts + ttl_seconds(window, now)
            else:
                expiry = entry[1]  # type: ignore[index]  # value > 0: a live entry
            value += hits
            counters[window.key] = (value, expiry)
            counts.append(value)
        if self._inserted >= self._SWEEP_EVERY:
            self._sweep(now_ts)
        return HitResult(exceeded < 0, exceeded, tuple(counts))

    def _sweep(self, now_ts: float) -> None:
        self._inserted = 0
        for key in [k for k, (_, expiry) in self._counters.items() if expiry <= now_ts]:
            del self._counters[key]

    async def read(self, keys: Sequence[str], now: datetime) -> list[int]:
        now_ts = now.timestamp()
        return [self._get(key, now_ts) for key in keys]

    async def close(self) -> None:
        self._counters.clear()

    def __len__(self) -> int:
        return len(self._counters)

"""Counter stores: one atomic, all-or-nothing check-and-increment over all windows of a request.

A request is admitted only when every hard window of every one of its descriptors has room for its
hits; then every window (hard, soft and count-only) is incremented, a window shared by several
descriptors (an API's or application's limit) once. A request refused by any descriptor increments
nothing, so a burst limit never eats the monthly quota and a later descriptor's refusal never consumes
an earlier one's windows. A descriptor in shadow mode (`enforce=False`) never refuses: its windows are
incremented even when one is exceeded.

A store whose counters can be lost while Tollway runs (Redis restarted without persistence) says so:
`seeded` turns False, and a `guarded` descriptor (a HARD billing-period quota) is refused, counting
nothing, until the period counters are rebuilt (throttle/rebuild.py: begin_rebuild, seed,
finish_rebuild). In-process memory loses its counters only with the process, so it is always seeded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, Protocol

from throttle.limits import Window, ttl_seconds


class StoreUnavailable(Exception):
    """The counters could not be reached in time; the caller applies the configured failure mode."""


class DescriptorWindows(NamedTuple):
    """One descriptor's windows in a step (keys distinct within it, as limits.windows_for makes them),
    and whether its exceeded hard window refuses the request (False: shadow mode)."""

    windows: Sequence[Window]
    enforce: bool = True
    # Its count must not start from zero after a loss: refused while the store is not seeded.
    guarded: bool = False


@dataclass(frozen=True, slots=True)
class HitResult:
    """One descriptor's part of a step."""

    # The request was counted and this descriptor exceeded no hard window.
    admitted: bool
    # Index into the descriptor's windows of the first hard window the hits did not fit in, or -1.
    exceeded: int
    # Each window's count after the step (unchanged when the request was refused).
    counts: tuple[int, ...]
    # Refused because the store lost its counters and they are not rebuilt yet (a guarded descriptor).
    unseeded: bool = False


class CounterStore(Protocol):
    async def step(
        self, descriptors: Sequence[DescriptorWindows], hits: int, now: datetime
    ) -> list[HitResult]:
        """One atomic check-and-increment over every window of every descriptor of one request; one
        result per descriptor, in order."""
        ...

    async def hit(
        self, windows: Sequence[Window], hits: int, now: datetime, enforce: bool = True
    ) -> HitResult:
        """`step` for a request of one descriptor."""
        ...

    async def read(self, keys: Sequence[str], now: datetime) -> list[int]: ...

    async def forget(self, keys: Sequence[str]) -> None:
        """Drops counters (a provisional subscription's, see service.py); best effort."""
        ...

    async def close(self) -> None: ...

    # False once the store knows it lost counters (until a rebuild finishes).
    seeded: bool

    async def check_seeded(self) -> bool:
        """Asks the store itself whether its counters are whole (and updates `seeded`)."""
        ...

    async def begin_rebuild(self) -> str:
        """Starts a rebuild; the token names it (a loss during the rebuild makes it fail)."""
        ...

    async def seed(self, token: str, counters: Sequence[tuple[str, int, int]]) -> bool:
        """Raises each (key, count, expire-at POSIX s) to at least `count`; False when the store lost
        its counters again since begin_rebuild."""
        ...

    async def finish_rebuild(self, token: str) -> bool:
        """Marks the counters whole again; False when they were lost again since begin_rebuild."""
        ...


def decide(windows: Sequence[Window], current: Sequence[int], hits: int) -> int:
    """Index of the first hard window that cannot take `hits` more, or -1. Shared by both stores (the
    Lua script mirrors it)."""
    for index, window in enumerate(windows):
        if window.hard and window.limit > 0 and current[index] + hits > window.limit:
            return index
    return -1


def distinct_windows(
    descriptors: Sequence[DescriptorWindows],
) -> tuple[list[Window], list[list[int]]]:
    """(every distinct window of a step, by key, in first-seen order; per descriptor, the index of
    each of its windows in that list). Both stores count a window once per step through it."""
    position: dict[str, int] = {}
    windows: list[Window] = []
    indices: list[list[int]] = []
    for descriptor in descriptors:
        own = []
        for window in descriptor.windows:
            at = position.get(window.key)
            if at is None:
                at = position[window.key] = len(windows)
                windows.append(window)
            own.append(at)
        indices.append(own)
    return windows, indices


class MemoryCounterStore:
    """In-process counters for a single replica. Each `step` runs without awaiting, so on the event
    loop it is atomic with respect to every other request."""

    # Expired counters are swept after this many new keys.
    _SWEEP_EVERY = 10_000

    # The counters live as long as the process: never lost while it runs.
    seeded = True

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
        return self._step_one(windows, hits, now, enforce)

    async def step(
        self, descriptors: Sequence[DescriptorWindows], hits: int, now: datetime
    ) -> list[HitResult]:
        if len(descriptors) == 1:
            return [self._step_one(descriptors[0].windows, hits, now, descriptors[0].enforce)]
        windows, indices = distinct_windows(descriptors)
        now_ts = now.timestamp()
        current = [self._get(w.key, now_ts) for w in windows]
        exceeded = [
            decide(d.windows, [current[i] for i in own], hits)
            for d, own in zip(descriptors, indices, strict=True)
        ]
        refused = any(e >= 0 and d.enforce for e, d in zip(exceeded, descriptors, strict=True))
        counts = current if refused else self._increment(windows, current, hits, now)
        return [
            HitResult(not refused and e < 0, e, tuple(counts[i] for i in own))
            for e, own in zip(exceeded, indices, strict=True)
        ]

    def _step_one(self, windows: Sequence[Window], hits: int, now: datetime, enforce: bool) -> HitResult:
        now_ts = now.timestamp()
        current = [self._get(w.key, now_ts) for w in windows]
        exceeded = decide(windows, current, hits)
        if exceeded >= 0 and enforce:
            return HitResult(False, exceeded, tuple(current))
        return HitResult(exceeded < 0, exceeded, tuple(self._increment(windows, current, hits, now)))

    def _increment(
        self, windows: Sequence[Window], current: Sequence[int], hits: int, now: datetime
    ) -> list[int]:
        now_ts = now.timestamp()
        counters = self._counters
        counts = []
        for window, value in zip(windows, current, strict=True):
            if value == 0:
                self._inserted += 1
                expiry = now_ts + ttl_seconds(window, now)
            else:
                expiry = counters[window.key][1]
            value += hits
            counters[window.key] = (value, expiry)
            counts.append(value)
        if self._inserted >= self._SWEEP_EVERY:
            self._sweep(now_ts)
        return counts

    def _sweep(self, now_ts: float) -> None:
        self._inserted = 0
        for key in [k for k, (_, expiry) in self._counters.items() if expiry <= now_ts]:
            del self._counters[key]

    async def read(self, keys: Sequence[str], now: datetime) -> list[int]:
        now_ts = now.timestamp()
        return [self._get(key, now_ts) for key in keys]

    async def forget(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._counters.pop(key, None)

    async def close(self) -> None:
        self._counters.clear()

    async def check_seeded(self) -> bool:
        return True

    async def begin_rebuild(self) -> str:
        return "memory"

    async def seed(self, token: str, counters: Sequence[tuple[str, int, int]]) -> bool:
        for key, count, expire_at in counters:
            current = self._counters.get(key)
            if current is None or current[0] < count:
                self._counters[key] = (count, float(expire_at))
        return True

    async def finish_rebuild(self, token: str) -> bool:
        return True

    def __len__(self) -> int:
        return len(self._counters)

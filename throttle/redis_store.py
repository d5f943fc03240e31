"""Counters in Redis, shared by any number of throttle replicas.

One Lua script reads every window of a request, decides, and increments all of them or none, so two
replicas can never both admit the last allowed request. All keys of a request carry the hash tag
`{sub:<id>}` (see limits.subscription_tag): one slot, so one request's step can run on Redis Cluster.

Requests are sent in batches: while one batch is in flight, new requests queue, and go together as
the next one, in ONE script call (EVALSHA) that takes the requests in order, each its own
all-or-nothing check-and-increment. The script runs atomically, so exactness is as for one call per
request; one command instead of one per request is most of redis-py's and Redis's per-call cost
saved under load. Under load a request that finds no batch in flight lingers up to 2 ms for
others to join it (see _LINGER); otherwise it goes at once. Each request's deadline counts from when
it was queued. A batch mixes subscriptions, so its keys span hash slots: batching needs a standalone Redis
(or a proxy that keeps a script on one node); on Redis Cluster a batch would have to be split per slot.

Every call has a short deadline. On a timeout or connection error the store raises StoreUnavailable at
once and, for `cooldown` seconds, fails fast without touching Redis, so an outage cannot make each
request wait; after that the next call probes Redis again (recovery needs no restart).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import datetime

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from throttle.counters import HitResult, StoreUnavailable
from throttle.limits import Window, expire_at
from throttle.metrics import ThrottleMetrics

log = logging.getLogger(__name__)

# keys, the request's part of ARGV, the caller's future, when it was queued (event-loop time)
_Pending = tuple[list[bytes], str, "asyncio.Future[list[int]]", float]
_MAX_BATCH = 256
# Under load (requests arriving on average less than _LINGER / 2 s apart) a request that finds no
# batch in flight waits up to _LINGER s for others to join it: a local Redis answers faster than gRPC
# delivers the next request, so without it nearly every batch holds one request and pays a whole
# Redis call (measured: batches of 1.05 on average, Redis CPU per decision 2.5x the no-op's). When
# requests come slower, a request goes at once and waits for nothing.
_LINGER = 0.002
_SPEC_CACHE_LIMIT = 100_000

# KEYS: every request's counters, request after request. ARGV[1]: one space-separated string (fewer
# arguments to encode per call, which dominates redis-py's cost); per request: number of keys, hits,
# enforce (1/0), now (POSIX s), then per key: limit, hard (1/0), expire-at (POSIX s).
# Returns, per request: admitted (1/0), exceeded (1-based, 0 = none), count per key. Mirrors
# counters.decide; requests are taken in order, so one that follows another on the same counter sees
# its increment.
HIT_SCRIPT = """
local a = {}
for token in string.gmatch(ARGV[1], '%S+') do
  a[#a + 1] = tonumber(token)
end
local out = {}
local k = 0
local p = 1
while p <= #a do
  local n, hits, enforce, now = a[p], a[p + 1], a[p + 2] == 1, a[p + 3]
  p = p + 4
  local values = {}
  local exceeded = 0
  for i = 1, n do
    local value = tonumber(redis.call('GET', KEYS[k + i]) or '0')
    values[i] = value
    local base = p + (i - 1) * 3
    local limit = a[base]
    if exceeded == 0 and a[base + 1] == 1 and limit > 0 and value + hits > limit then
      exceeded = i
    end
  end
  if exceeded > 0 and enforce then
    out[#out + 1] = 0
    out[#out + 1] = exceeded
    for i = 1, n do
      out[#out + 1] = values[i]
    end
  else
    out[#out + 1] = exceeded == 0 and 1 or 0
    out[#out + 1] = exceeded
    for i = 1, n do
      local key = KEYS[k + i]
      local value = redis.call('INCRBY', key, hits)
      if value == hits then
        local ttl = a[p + (i - 1) * 3 + 2] - now
        if ttl < 1 then
          ttl = 1
        end
        redis.call('EXPIRE', key, ttl)
      end
      out[#out + 1] = value
    end
  end
  k = k + n
  p = p + n * 3
end
return out
"""


class RedisCounterStore:
    def __init__(
        self,
        url: str,
        timeout_ms: int = 50,
        cooldown: float = 0.5,
        metrics: ThrottleMetrics | None = None,
    ) -> None:
        if timeout_ms <= 0:
            raise ValueError("redis timeout must be positive")
        self._timeout = timeout_ms / 1000
        self._cooldown = cooldown
        self._down_until = 0.0
        self._metrics = metrics or ThrottleMetrics()
        # No client-side retries: the deadline is the whole budget, the failure mode decides the rest.
        self._redis = Redis.from_url(
            url,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._script = self._redis.register_script(HIT_SCRIPT)
        self._batch: list[_Pending] = []
        self._specs: dict[int, tuple[Sequence[Window], list[bytes], str]] = {}
        self._in_flight = False
        self._last_hit_at = 0.0
        self._gap = 1.0
        # Never linger for a noticeable share of the deadline.
        self._linger = min(_LINGER, self._timeout / 10)
        self._drain_task: asyncio.Task[None] | None = None

    async def _call(
        self, operation: str, coro_factory: object, deadline: float | None = None
    ) -> list[object]:
        if time.monotonic() < self._down_until:
            self._metrics.redis_error("cooldown")
            raise StoreUnavailable("redis unavailable (cooling down)")
        started = time.perf_counter()
        try:
            loop_deadline = (
                deadline if deadline is not None else asyncio.get_running_loop().time() + self._timeout
            )
            async with asyncio.timeout_at(loop_deadline):
                result = await coro_factory()  # type: ignore[operator]
        except (TimeoutError, RedisError, OSError) as exc:
            self._down_until = time.monotonic() + self._cooldown
            self._metrics.redis_error(type(exc).__name__)
            log.warning("redis %s failed: %s", operation, type(exc).__name__)
            raise StoreUnavailable(f"redis {operation} failed: {type(exc).__name__}") from None
        self._metrics.redis_latency(time.perf_counter() - started)
        return list(result)

    def _spec(self, windows: Sequence[Window]) -> tuple[list[bytes], str]:
        """(keys, per-key script arguments) of a window list. The service hands the same list for
        every request until one of its windows ends, so this is built once per list, not per request."""
        cached = self._specs.get(id(windows))
        if cached is not None and cached[0] is windows:
            return cached[1], cached[2]
        keys = [w.key.encode() for w in windows]  # bytes: redis-py sends them without re-encoding
        spec = " ".join(f"{w.limit} {1 if w.hard else 0} {expire_at(w)}" for w in windows)
        if len(self._specs) >= _SPEC_CACHE_LIMIT:
            self._specs.clear()
        # Holding the list keeps its id from being reused by another list while cached.
        self._specs[id(windows)] = (windows, keys, spec)
        return keys, spec

    async def hit(
        self, windows: Sequence[Window], hits: int, now: datetime, enforce: bool = True
    ) -> HitResult:
        if time.monotonic() < self._down_until:
            self._metrics.redis_error("cooldown")
            raise StoreUnavailable("redis unavailable (cooling down)")
        keys, spec = self._spec(windows)
        arg = f"{len(keys)} {hits} {1 if enforce else 0} {int(now.timestamp())} {spec}"
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[int]] = loop.create_future()
        self._batch.append((keys, arg, future, loop.time()))
        now_l = loop.time()
        # Moving average of the gap between requests (weight 1/8).
        self._gap += (min(now_l - self._last_hit_at, 1.0) - self._gap) / 8
        self._last_hit_at = now_l
        if not self._in_flight:
            self._in_flight = True
            self._drain_task = loop.create_task(self._drain(self._linger if self._gap < _LINGER / 2 else 0.0))
        reply = await future
        return HitResult(reply[0] == 1, reply[1] - 1, tuple(reply[2:]))

    async def _drain(self, linger: float) -> None:
        try:
            if linger:
                await asyncio.sleep(linger)
            while self._batch:
                batch, self._batch = self._batch[:_MAX_BATCH], self._batch[_MAX_BATCH:]
                await self._run_batch(batch)
        finally:
            self._in_flight = False

    async def _eval(self, batch: list[_Pending]) -> list[object]:
        keys = [key for pending in batch for key in pending[0]]
        arg = " ".join(pending[1] for pending in batch)
        try:
            return await self._redis.evalsha(self._script.sha, len(keys), *keys, arg)  # type: ignore[no-any-return]
        except NoScriptError:
            # A restarted (or failed-over) Redis forgot the script: load it once, run the batch again.
            # NOSCRIPT means the script did not run, so nothing was counted twice.
            self._script.sha = await self._redis.script_load(HIT_SCRIPT)
            return await self._redis.evalsha(self._script.sha, len(keys), *keys, arg)  # type: ignore[no-any-return]

    async def _run_batch(self, batch: list[_Pending]) -> None:
        try:
            # The oldest request's deadline bounds the batch: no caller waits longer than its timeout.
            reply = await self._call("hit", lambda: self._eval(batch), deadline=batch[0][3] + self._timeout)
        except Exception as exc:
            # Never leave a request waiting: whatever went wrong, every caller gets its answer now.
            if not isinstance(exc, StoreUnavailable):
                log.exception("redis batch failed")
            for _, _, future, _ in batch:
                if not future.done():
                    future.set_exception(StoreUnavailable(f"redis hit failed: {type(exc).__name__}"))
            return
        at = 0
        for keys, _, future, _ in batch:
            size = len(keys) + 2
            if not future.done():
                future.set_result(reply[at : at + size])  # type: ignore[arg-type]
            at += size

    async def read(self, keys: Sequence[str], now: datetime) -> list[int]:
        if not keys:
            return []
        values = await self._call("read", lambda: self._redis.mget(list(keys)))
        return [int(v) if v is not None else 0 for v in values]  # type: ignore[call-overload]

    async def ping(self) -> bool:
        try:
            await self._call("ping", lambda: self._list_ping())
        except StoreUnavailable:
            return False
        return True

    async def _list_ping(self) -> list[object]:
        return [await self._redis.ping()]

    async def close(self) -> None:
        await self._redis.aclose()

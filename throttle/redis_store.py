"""Counters in Redis, shared by any number of throttle replicas.

One Lua script reads every window of every descriptor of a request, decides, and increments all of them
or none, so two replicas can never both admit the last allowed request, and a descriptor that refuses
the request leaves the others' windows untouched. All keys of a request carry the hash tag
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
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Sequence
from datetime import datetime

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from throttle.counters import DescriptorWindows, HitResult, StoreUnavailable, distinct_windows
from throttle.limits import Window, expire_at
from throttle.metrics import ThrottleMetrics

log = logging.getLogger(__name__)

# keys, the request's part of ARGV, the caller's future, when it was queued (event-loop time), the
# length of its part of the reply
_Pending = tuple[list[bytes], str, "asyncio.Future[list[int]]", float, int]
_MAX_BATCH = 256
# Under load (requests arriving on average less than _LINGER / 2 s apart) a request that finds no
# batch in flight waits up to _LINGER s for others to join it: a local Redis answers faster than gRPC
# delivers the next request, so without it nearly every batch holds one request and pays a whole
# Redis call (measured: batches of 1.05 on average, Redis CPU per decision 2.5x the no-op's). When
# requests come slower, a request goes at once and waits for nothing.
_LINGER = 0.002
_SPEC_CACHE_LIMIT = 100_000

# KEYS[1]: the marker (SEEDED_KEY) that says this Redis kept its counters since they were last
# rebuilt; then every request's distinct counters, request after request. ARGV[1]: one space-separated
# string (fewer arguments to encode per call, which dominates redis-py's cost); per request: number of
# keys, hits, now (POSIX s), number of descriptors, guarded (1/0: a HARD billing-period quota that must
# not count from zero after a loss), then per key its expire-at (POSIX s), then per descriptor:
# enforce (1/0), number of windows, and per window: key number (1-based within the request), limit,
# hard (1/0). Returns whether the marker exists (1/0), then per request: admitted (1), refused by a
# window (0) or refused because the counters were lost and are not rebuilt yet (2: guarded and no
# marker; nothing counted), per descriptor its exceeded window (1-based, 0 = none), then the count of
# each key. Mirrors counters.MemoryCounterStore.step: the request is refused when an enforcing
# descriptor exceeds a hard window, and then nothing is counted; requests are taken in order, so one
# that follows another on the same counter sees its increment.
HIT_SCRIPT = """
local a = {}
for token in string.gmatch(ARGV[1], '%S+') do
  a[#a + 1] = tonumber(token)
end
local seeded = redis.call('EXISTS', KEYS[1]) == 1
local out = {seeded and 1 or 0}
local k = 1
local p = 1
while p <= #a do
  local n, hits, now, parts, guarded = a[p], a[p + 1], a[p + 2], a[p + 3], a[p + 4]
  p = p + 5
  local expire = p
  p = p + n
  local values = {}
  for i = 1, n do
    values[i] = tonumber(redis.call('GET', KEYS[k + i]) or '0')
  end
  local exceeded = {}
  local refused = false
  for j = 1, parts do
    local enforce, m = a[p] == 1, a[p + 1]
    p = p + 2
    local e = 0
    for w = 1, m do
      local i, limit, hard = a[p], a[p + 1], a[p + 2]
      p = p + 3
      if e == 0 and hard == 1 and limit > 0 and values[i] + hits > limit then
        e = w
      end
    end
    exceeded[j] = e
    if e > 0 and enforce then
      refused = true
    end
  end
  if refused then
    out[#out + 1] = 0
  elseif guarded == 1 and not seeded then
    refused = true
    out[#out + 1] = 2
  else
    out[#out + 1] = 1
  end
  for j = 1, parts do
    out[#out + 1] = exceeded[j]
  end
  for i = 1, n do
    if refused then
      out[#out + 1] = values[i]
    else
      local key = KEYS[k + i]
      local value = redis.call('INCRBY', key, hits)
      if value == hits then
        local ttl = a[expire + i - 1] - now
        if ttl < 1 then
          ttl = 1
        end
        redis.call('EXPIRE', key, ttl)
      end
      out[#out + 1] = value
    end
  end
  k = k + n
end
return out
"""

# Billing-period counters survive only as long as Redis keeps its data. The marker is written when
# they are rebuilt (from usage's admitted counts, throttle/rebuild.py) and is lost with them, so its
# absence is how a restarted Redis without persistence is noticed: one EXISTS per batch, no database
# work. A rebuild holds a token key of its own; seeding and finishing check it in the same script, so
# a Redis that loses its data again mid-rebuild makes the rebuild start over instead of marking
# half-seeded counters as whole.
SEEDED_KEY = "tw:quota:seeded"
_REBUILD_PREFIX = "tw:quota:rebuild:"
_REBUILD_TTL_S = 3600
# KEYS[1]: the rebuild's token key; KEYS[2..]: counters. ARGV: per counter its count and expire-at.
SEED_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
for i = 2, #KEYS do
  local count = tonumber(ARGV[2 * i - 3])
  if tonumber(redis.call('GET', KEYS[i]) or '0') < count then
    redis.call('SET', KEYS[i], count)
    redis.call('EXPIREAT', KEYS[i], tonumber(ARGV[2 * i - 2]))
  end
end
return 1
"""
# KEYS[1]: the rebuild's token key; KEYS[2]: the marker. ARGV[1]: the marker's value.
FINISH_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
return 1
"""
_SEED_CHUNK = 500
_REBUILD_CALL_TIMEOUT_S = 2.0


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
        self._seed_script = self._redis.register_script(SEED_SCRIPT)
        self._finish_script = self._redis.register_script(FINISH_SCRIPT)
        self._seeded_key = SEEDED_KEY.encode()
        # Until a reply says otherwise: the marker is looked at in every batch.
        self.seeded = True
        self._batch: list[_Pending] = []
        self._specs: dict[int, tuple[Sequence[Window], list[bytes], str, str]] = {}
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

    def _spec(self, windows: Sequence[Window]) -> tuple[list[bytes], str, str]:
        """(keys, their expire-at arguments, the descriptor's window arguments) of a window list. The
        service hands the same list for every request until one of its windows ends, so this is built
        once per list, not per request."""
        cached = self._specs.get(id(windows))
        if cached is not None and cached[0] is windows:
            return cached[1], cached[2], cached[3]
        keys = [w.key.encode() for w in windows]  # bytes: redis-py sends them without re-encoding
        expires = " ".join(str(expire_at(w)) for w in windows)
        spec = f"{len(windows)} " + " ".join(
            f"{i} {w.limit} {1 if w.hard else 0}" for i, w in enumerate(windows, 1)
        )
        if len(self._specs) >= _SPEC_CACHE_LIMIT:
            self._specs.clear()
        # Holding the list keeps its id from being reused by another list while cached.
        self._specs[id(windows)] = (windows, keys, expires, spec)
        return keys, expires, spec

    def _arguments(
        self, descriptors: Sequence[DescriptorWindows], hits: int, now: datetime
    ) -> tuple[list[bytes], str, list[list[int]] | None]:
        """(keys, the request's part of ARGV, per descriptor its windows' key positions; None = the
        one descriptor's windows are the keys, in order)."""
        now_s = int(now.timestamp())
        if len(descriptors) == 1:
            keys, expires, spec = self._spec(descriptors[0].windows)
            enforce = 1 if descriptors[0].enforce else 0
            guarded = 1 if descriptors[0].guarded else 0
            return keys, f"{len(keys)} {hits} {now_s} 1 {guarded} {expires} {enforce} {spec}", None
        windows, indices = distinct_windows(descriptors)
        guarded = 1 if any(d.guarded for d in descriptors) else 0
        parts = [f"{len(windows)} {hits} {now_s} {len(descriptors)} {guarded}"]
        parts += [str(expire_at(w)) for w in windows]
        for descriptor, own in zip(descriptors, indices, strict=True):
            parts.append(f"{1 if descriptor.enforce else 0} {len(own)}")
            parts += [
                f"{i + 1} {w.limit} {1 if w.hard else 0}"
                for i, w in zip(own, descriptor.windows, strict=True)
            ]
        return [w.key.encode() for w in windows], " ".join(parts), indices

    async def hit(
        self, windows: Sequence[Window], hits: int, now: datetime, enforce: bool = True
    ) -> HitResult:
        (result,) = await self.step((DescriptorWindows(windows, enforce),), hits, now)
        return result

    async def step(
        self, descriptors: Sequence[DescriptorWindows], hits: int, now: datetime
    ) -> list[HitResult]:
        if time.monotonic() < self._down_until:
            self._metrics.redis_error("cooldown")
            raise StoreUnavailable("redis unavailable (cooling down)")
        keys, arg, indices = self._arguments(descriptors, hits, now)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[int]] = loop.create_future()
        self._batch.append((keys, arg, future, loop.time(), 1 + len(descriptors) + len(keys)))
        now_l = loop.time()
        # Moving average of the gap between requests (weight 1/8).
        self._gap += (min(now_l - self._last_hit_at, 1.0) - self._gap) / 8
        self._last_hit_at = now_l
        if not self._in_flight:
            self._in_flight = True
            self._drain_task = loop.create_task(self._drain(self._linger if self._gap < _LINGER / 2 else 0.0))
        reply = await future
        refused = reply[0] != 1
        unseeded = reply[0] == 2
        exceeded = reply[1 : 1 + len(descriptors)]
        counts = reply[1 + len(descriptors) :]
        if indices is None:
            return [HitResult(not refused and exceeded[0] == 0, exceeded[0] - 1, tuple(counts), unseeded)]
        return [
            HitResult(not refused and e == 0, e - 1, tuple(counts[i] for i in own), unseeded and d.guarded)
            for e, own, d in zip(exceeded, indices, descriptors, strict=True)
        ]

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
        keys = [self._seeded_key, *(key for pending in batch for key in pending[0])]
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
            for _, _, future, _, _ in batch:
                if not future.done():
                    future.set_exception(StoreUnavailable(f"redis hit failed: {type(exc).__name__}"))
            return
        self.seeded = reply[0] == 1
        at = 1
        for _, _, future, _, size in batch:
            if not future.done():
                future.set_result(reply[at : at + size])  # type: ignore[arg-type]
            at += size

    async def read(self, keys: Sequence[str], now: datetime) -> list[int]:
        if not keys:
            return []
        values = await self._call("read", lambda: self._redis.mget(list(keys)))
        return [int(v) if v is not None else 0 for v in values]  # type: ignore[call-overload]

    async def forget(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        # The counters expire by themselves; forgetting only frees memory sooner.
        with contextlib.suppress(StoreUnavailable):
            await self._call("forget", lambda: self._delete(keys))

    async def _delete(self, keys: Sequence[str]) -> list[object]:
        return [await self._redis.delete(*keys)]

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

    # --- rebuilding the billing-period counters after Redis lost them (throttle/rebuild.py) ---------

    async def _rebuild_call(self, operation: str, awaitable: Awaitable[object]) -> object:
        """A call of the rebuild: a deadline of its own (seeding a chunk may take longer than a
        request's budget), and a failure does not send the request path into its cooldown."""
        try:
            async with asyncio.timeout(_REBUILD_CALL_TIMEOUT_S):
                return await awaitable
        except (TimeoutError, RedisError, OSError) as exc:
            self._metrics.redis_error(type(exc).__name__)
            raise StoreUnavailable(f"redis {operation} failed: {type(exc).__name__}") from None

    async def check_seeded(self) -> bool:
        self.seeded = bool(await self._rebuild_call("check", self._redis.exists(self._seeded_key)))
        return self.seeded

    async def begin_rebuild(self) -> str:
        token = secrets.token_hex(8)
        await self._rebuild_call("rebuild", self._redis.set(_REBUILD_PREFIX + token, "1", ex=_REBUILD_TTL_S))
        return token

    async def seed(self, token: str, counters: Sequence[tuple[str, int, int]]) -> bool:
        key = (_REBUILD_PREFIX + token).encode()
        for start in range(0, len(counters), _SEED_CHUNK):
            chunk = counters[start : start + _SEED_CHUNK]
            keys = [key, *(name.encode() for name, _, _ in chunk)]
            args = [str(value) for _, count, expire in chunk for value in (count, expire)]
            if not await self._rebuild_call("seed", self._seed_script(keys=keys, args=args)):
                return False
        return True

    async def finish_rebuild(self, token: str) -> bool:
        keys = [_REBUILD_PREFIX + token, SEEDED_KEY]
        marker = f"{token} {int(time.time())}"
        done = bool(await self._rebuild_call("finish", self._finish_script(keys=keys, args=[marker])))
        if done:
            self.seeded = True
        return done

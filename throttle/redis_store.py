"""Counters in Redis, shared by any number of throttle replicas.

One Lua script reads every window of a request, decides, and increments all of them or none, so two
replicas can never both admit the last allowed request. All keys of a request carry the hash tag
`{sub:<id>}` (see limits.subscription_tag): one slot, so the script also runs on Redis Cluster.

Requests are sent in batches: while one batch is in flight, new requests queue, and go together as
the next one, a pipeline of script calls (each still its own atomic step in its subscription's
slot). One socket write and read for many decisions is most of redis-py's cost saved under load; a
lone request goes at once. Each request's deadline counts from when it was queued.

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
from throttle.limits import Window, ttl_seconds
from throttle.metrics import ThrottleMetrics

log = logging.getLogger(__name__)

# keys, args, the caller's future, when it was queued (event-loop time)
_Pending = tuple[list[str], list[int | str], "asyncio.Future[list[object]]", float]
_MAX_BATCH = 256

# KEYS: the request's counters. ARGV[1]: one space-separated string (fewer arguments to encode per
# call, which dominates redis-py's cost): hits, enforce (1/0), then per key: limit, hard (1/0), ttl s.
# Returns {admitted (1/0), exceeded (1-based, 0 = none), count per key...}. Mirrors counters.decide.
HIT_SCRIPT = """
local a = {}
for token in string.gmatch(ARGV[1], '%S+') do
  a[#a + 1] = tonumber(token)
end
local hits = a[1]
local enforce = a[2] == 1
local values = redis.call('MGET', unpack(KEYS))
local exceeded = 0
for i = 1, #KEYS do
  local value = tonumber(values[i] or '0')
  values[i] = value
  local base = 3 + (i - 1) * 3
  local limit = a[base]
  if exceeded == 0 and a[base + 1] == 1 and limit > 0 and value + hits > limit then
    exceeded = i
  end
end
if exceeded > 0 and enforce then
  return {0, exceeded, unpack(values)}
end
for i = 1, #KEYS do
  local value = redis.call('INCRBY', KEYS[i], hits)
  if value == hits then
    redis.call('EXPIRE', KEYS[i], a[3 + (i - 1) * 3 + 2])
  end
  values[i] = value
end
return {exceeded == 0 and 1 or 0, exceeded, unpack(values)}
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
        self._in_flight = False
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

    async def hit(
        self, windows: Sequence[Window], hits: int, now: datetime, enforce: bool = True
    ) -> HitResult:
        keys = [w.key for w in windows]
        parts = [str(hits), "1" if enforce else "0"]
        for window in windows:
            parts += [str(window.limit), "1" if window.hard else "0", str(ttl_seconds(window, now))]
        args: list[int | str] = [" ".join(parts)]
        if time.monotonic() < self._down_until:
            self._metrics.redis_error("cooldown")
            raise StoreUnavailable("redis unavailable (cooling down)")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[object]] = loop.create_future()
        self._batch.append((keys, args, future, loop.time()))
        if not self._in_flight:
            self._in_flight = True
            self._drain_task = loop.create_task(self._drain())
        reply = await future
        admitted, exceeded = int(reply[0]), int(reply[1])  # type: ignore[call-overload]
        counts = tuple(int(v) for v in reply[2:])  # type: ignore[call-overload]
        return HitResult(admitted == 1, exceeded - 1, counts)

    async def _drain(self) -> None:
        try:
            while self._batch:
                batch, self._batch = self._batch[:_MAX_BATCH], self._batch[_MAX_BATCH:]
                await self._run_batch(batch)
        finally:
            self._in_flight = False

    async def _pipeline(self, batch: list[_Pending]) -> list[object]:
        pipe = self._redis.pipeline(transaction=False)
        for keys, args, _, _ in batch:
            pipe.evalsha(self._script.sha, len(keys), *keys, *args)
        results = await pipe.execute(raise_on_error=False)
        if any(isinstance(r, NoScriptError) for r in results):
            # A restarted (or failed-over) Redis forgot the script: load it once, run the batch again.
            # NOSCRIPT means the script did not run, so nothing was counted twice.
            self._script.sha = await self._redis.script_load(HIT_SCRIPT)
            retry = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
            pipe = self._redis.pipeline(transaction=False)
            for i in retry:
                keys, args, _, _ = batch[i]
                pipe.evalsha(self._script.sha, len(keys), *keys, *args)
            for i, result in zip(retry, await pipe.execute(raise_on_error=False), strict=True):
                results[i] = result
        return list(results)

    async def _run_batch(self, batch: list[_Pending]) -> None:
        try:
            # The oldest request's deadline bounds the batch: no caller waits longer than its timeout.
            results = await self._call(
                "hit", lambda: self._pipeline(batch), deadline=batch[0][3] + self._timeout
            )
        except Exception as exc:
            # Never leave a request waiting: whatever went wrong, every caller gets its answer now.
            if not isinstance(exc, StoreUnavailable):
                log.exception("redis batch failed")
            for _, _, future, _ in batch:
                if not future.done():
                    future.set_exception(StoreUnavailable(f"redis hit failed: {type(exc).__name__}"))
            return
        for (_, _, future, _), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                self._metrics.redis_error(type(result).__name__)
                future.set_exception(StoreUnavailable(f"redis hit failed: {type(result).__name__}"))
            else:
                future.set_result(list(result))  # type: ignore[call-overload]

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

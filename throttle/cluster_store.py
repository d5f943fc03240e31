"""Counters on a Redis Cluster: the standalone store's script, batching and deadlines, routed by slot.

A request's own windows share the slot of `{sub:<id>}`, so its step is one atomic script, as on a
standalone Redis. A batch is split per slot (one EVALSHA per slot, taking that slot's requests in
order, so each stays exact) and sent as one pipeline per master, concurrently. redis-py's cluster
client keeps the slot map, follows MOVED and ASK and reconnects; on top of it:
- Errors are per node: a timeout, a refused connection or CLUSTERDOWN fails that master's slots (the
  caller applies the failure mode), which then fail fast for a cooldown; the other masters keep
  counting. The slot map is checked in the background and rebuilt only when a replica was promoted
  (a rebuild makes redis-py reconnect everything), so counting resumes without restart.
- Discovery never runs inside a request's deadline: redis-py would run it inline on its next call
  after a connection error (CLUSTER SLOTS, then COMMAND: 20-200 ms), and a 50 ms deadline would cut
  it short every time. Until it has finished, requests fail fast.

Limits shared by an application (`{app:<id>}`) or an API (`{api:<id>}`) live in slots of their own.
A request under them takes its steps in a fixed order, subscription, then application, then API, each
the same all-or-nothing script in its slot; when a later step refuses, the earlier steps' increments
are taken back (compensated) before the answer, so a refused request consumes nothing. Each step
checks against counts holding every admitted request plus, for a moment, the increments of requests
between their steps: that can refuse a request one atomic step would have admitted (over-denial),
never admit one too many. The steps run in a task of their own, so a caller giving up (Envoy's
deadline) cannot stop them between a step and its compensation.

A crash between two steps (or a compensation that cannot reach its master) leaves the earlier steps'
increments until their windows end: at most one request's hits per request in flight, over-denial,
never over-admission (tests/throttle/test_cluster_store.py kills a replica between its steps). A
failover loses what asynchronous replication had not yet sent (the counts of the last moments before
the master died; a compensation landing on the promoted replica may take back one of those again):
tests/throttle/test_cluster_failover.py reports it. Cost: a decision takes about 1.75 times the
throttle's CPU of a standalone Redis's, 3 times under a shared limit in another slot (one script call
per slot rather than per batch; measured with bench/cluster_bench.py, README "Performance").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import NoScriptError, RedisClusterException

from throttle.cluster_nodes import (
    REDIS_FAILURES,
    HostPort,
    SlotMarkers,
    cluster_options,
    seeded_keys,
    send_pipeline,
    startup_nodes,
)
from throttle.counters import DescriptorWindows, HitResult, StoreUnavailable, decide
from throttle.limits import API, APPLICATION, PERIOD, SUBSCRIPTION, Window
from throttle.metrics import ThrottleMetrics
from throttle.redis_store import _SPEC_CACHE_LIMIT, HIT_SCRIPT, RedisCounterStore, _Pending
from tollway.vocabulary import LimitScope

log = logging.getLogger(__name__)

# The order of a request's steps (DESIGN.md, "State and scale").
STEP_ORDER: dict[LimitScope, int] = {SUBSCRIPTION: 0, APPLICATION: 1, API: 2}

# Takes one refused request's hits back from the counters of one slot. Never below zero, and a
# counter that is gone (expired, or lost in a failover) stays gone: a DECRBY on it would create it
# without an expiry, below zero, and so admit more than the limit.
COMPENSATE_SCRIPT = """
local hits = tonumber(ARGV[1])
for i = 1, #KEYS do
  local value = tonumber(redis.call('GET', KEYS[i]) or '0')
  if value > 0 then
    redis.call('DECRBY', KEYS[i], math.min(value, hits))
  end
end
return 1
"""


@dataclass(frozen=True, slots=True)
class _Piece:
    """The windows of one descriptor that live in one slot, and where they come in its steps."""

    slot: int
    order: int
    windows: list[Window]
    # Holds the billing period: where a guarded descriptor's guard applies (its slot's marker).
    period: bool


# A step: its slot, and each descriptor's part in it.
_Step = tuple[int, list[DescriptorWindows]]


class ClusterCounterStore(SlotMarkers, RedisCounterStore):
    """The counter store on a Redis Cluster. Shares the standalone store's deadline, batching and
    script encoding (RedisCounterStore._configure, _enqueue, _arguments, _results) and replaces every
    method that talks to Redis."""

    def __init__(
        self,
        url: str = "",
        nodes: Sequence[HostPort] = (),
        timeout_ms: int = 50,
        cooldown: float = 0.5,
        metrics: ThrottleMetrics | None = None,
        discovery_timeout: float = 5.0,
    ) -> None:
        self._configure(timeout_ms, cooldown, metrics)
        self._discovery_timeout = discovery_timeout
        self._cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in startup_nodes(url, nodes)],
            # Every call here has its own asyncio deadline (the request's); the sockets' own timeouts
            # only bound discovery, whose COMMAND reply (100+ KB) takes longer than 50 ms on a busy
            # machine: with the request's deadline there, discovery could fail every time.
            socket_timeout=discovery_timeout,
            socket_connect_timeout=discovery_timeout,
            # No retries: the deadline is the whole budget, the failure mode decides the rest.
            retry=Retry(NoBackoff(), 0),
            # A MOVED patches that slot; the whole map is rediscovered in the background instead.
            reinitialize_steps=0,
            **cluster_options(url),
        )
        self._sha = self._cluster.register_script(HIT_SCRIPT).sha
        self._pieces_cache: dict[int, tuple[Sequence[Window], list[_Piece]]] = {}
        # Node (host:port) → until when its slots fail fast.
        self._node_down: dict[str, float] = {}
        self._discovery: asyncio.Task[None] | None = None
        self._next_discovery = 0.0

    # -- topology --------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Discovers the cluster now (at start), so the first requests need not fail fast while it
        happens in the background, and opens a connection to each master, so they need not wait for
        one either. Raises what the discovery raised."""
        async with asyncio.timeout(self._discovery_timeout):
            await self._cluster.initialize()
            await self._cluster.ping(target_nodes=RedisCluster.PRIMARIES)

    def _discovered(self) -> bool:
        # redis-py marks its client for rediscovery after a connection error and would run it inline
        # on its next call; a background task runs it instead, and calls fail fast meanwhile.
        if self._cluster._initialize:
            self._rediscover()
            return False
        return True

    def _rediscover(self) -> None:
        """Checks the slot map in the background, at most once per cooldown."""
        if self._discovery is not None and not self._discovery.done():
            return
        now = time.monotonic()
        if now < self._next_discovery:
            return
        self._next_discovery = now + self._cooldown
        self._discovery = asyncio.get_running_loop().create_task(self._discover())

    async def _discover(self) -> None:
        try:
            async with asyncio.timeout(self._discovery_timeout):
                if self._cluster._initialize:
                    await self._cluster.initialize()
                elif await self._slots_moved():
                    log.info("redis cluster: slots moved (a failover, or resharding): rebuilding the map")
                    await self._cluster.nodes_manager.initialize()
        except REDIS_FAILURES as exc:
            self._metrics.redis_error(f"discovery_{type(exc).__name__}")
            log.warning("redis cluster discovery failed: %s", exc)

    async def _slots_moved(self) -> bool:
        """Whether a master that answers names another owner than the client's map for some slots.
        Only then is the map rebuilt: a rebuild makes every connection reconnect (redis-py), which
        during an outage would cost the healthy masters' requests their deadlines over and over."""
        cache = self._cluster.nodes_manager.slots_cache
        for node in self._cluster.get_primaries():
            try:
                # A frozen master must not hold up the question for the others.
                async with asyncio.timeout(max(self._timeout, 0.5)):
                    ranges = await node.execute_command("CLUSTER SLOTS")
            except REDIS_FAILURES:
                continue  # the dead master, or one cut off: ask the next
            for start, _, master, *_ in ranges:
                host = master[0].decode() if isinstance(master[0], bytes) else str(master[0])
                owner = cache.get(int(start))
                if owner is None or owner[0].name != f"{host or node.host}:{int(master[1])}":
                    return True
            return False
        return True  # no master answered: rebuild from every node known (the replicas too)

    def _node_of(self, slot: int) -> str:
        """The master serving `slot` (host:port); StoreUnavailable when it cannot be used now."""
        if not self._discovered():
            self._metrics.redis_error("discovering")
            raise StoreUnavailable("redis cluster: discovering its nodes")
        try:
            name = str(self._cluster.nodes_manager.get_node_from_slot(slot).name)
        except (KeyError, RedisClusterException):
            self._rediscover()
            self._metrics.redis_error("slot_not_covered")
            raise StoreUnavailable(f"redis cluster: no node serves slot {slot}") from None
        if time.monotonic() < self._node_down.get(name, 0.0):
            self._metrics.redis_error("cooldown")
            raise StoreUnavailable(f"redis cluster node {name} unavailable (cooling down)")
        return name

    def _node_failed(self, node: str, exc: BaseException) -> None:
        error = type(exc).__name__
        self._metrics.redis_error(error)
        self._metrics.redis_node_error(node, error)
        self._node_down[node] = time.monotonic() + self._cooldown
        log.warning("redis cluster node %s failed: %s", node, error)
        self._rediscover()

    # -- a request's steps -------------------------------------------------------------------------

    def _pieces(self, windows: Sequence[Window]) -> list[_Piece]:
        """A window list split by slot, in step order. Built once per list, like the script
        arguments (the service hands the same list until one of its windows ends)."""
        cached = self._pieces_cache.get(id(windows))
        if cached is not None and cached[0] is windows:
            return cached[1]
        by_slot: dict[int, list[Window]] = {}
        for window in windows:
            by_slot.setdefault(key_slot(window.key.encode()), []).append(window)
        pieces = [
            _Piece(slot, min(STEP_ORDER[w.scope] for w in own), own, any(w.name == PERIOD for w in own))
            for slot, own in by_slot.items()
        ]
        pieces.sort(key=lambda piece: piece.order)  # stable: first seen first within an order
        if len(self._pieces_cache) >= _SPEC_CACHE_LIMIT:
            self._pieces_cache.clear()
        self._pieces_cache[id(windows)] = (windows, pieces)
        return pieces

    @staticmethod
    def _steps(descriptors: Sequence[DescriptorWindows], pieces: list[list[_Piece]]) -> list[_Step]:
        """The steps of a request: per slot, each descriptor's windows there, in step order."""
        by_slot: dict[int, tuple[list[int], list[DescriptorWindows]]] = {}
        for descriptor, own in zip(descriptors, pieces, strict=True):
            for piece in own:
                entry = by_slot.setdefault(piece.slot, ([piece.order, len(by_slot)], []))
                entry[0][0] = min(entry[0][0], piece.order)
                guarded = descriptor.guarded and piece.period
                entry[1].append(DescriptorWindows(piece.windows, descriptor.enforce, guarded))
        ordered = sorted(by_slot.items(), key=lambda item: item[1][0])
        return [(slot, parts) for slot, (_, parts) in ordered]

    async def step(
        self, descriptors: Sequence[DescriptorWindows], hits: int, now: datetime
    ) -> list[HitResult]:
        pieces = [self._pieces(d.windows) for d in descriptors]
        slots = {piece.slot for own in pieces for piece in own}
        if not slots:
            return [HitResult(True, -1, ()) for _ in descriptors]
        if len(slots) == 1:
            # One slot (no shared limit in another): one script, as on a standalone Redis.
            self._node_of(next(iter(slots)))
            keys, arg, indices = self._arguments(descriptors, hits, now)
            reply = await self._enqueue(keys, arg, 1 + len(descriptors) + len(keys))
            return self._results(reply, descriptors, indices)
        steps = self._steps(descriptors, pieces)
        # Shielded: a caller that stops waiting must not stop the steps between one and its compensation.
        task = asyncio.get_running_loop().create_task(self._stepwise(descriptors, steps, hits, now))
        return await asyncio.shield(task)

    async def _stepwise(
        self, descriptors: Sequence[DescriptorWindows], steps: list[_Step], hits: int, now: datetime
    ) -> list[HitResult]:
        counts: dict[bytes, int] = {}
        taken: list[list[bytes]] = []
        refused_at = -1
        unseeded = False
        try:
            for at, (slot, parts) in enumerate(steps):
                self._node_of(slot)
                keys, arg, _ = self._arguments(parts, hits, now)
                reply = await self._enqueue(keys, arg, 1 + len(parts) + len(keys))
                counts.update(zip(keys, reply[1 + len(parts) :], strict=True))
                if reply[0] != 1:
                    # 0: a window refused; 2: a guarded quota whose slot lost its counters.
                    refused_at, unseeded = at, reply[0] == 2
                    break
                taken.append(keys)
        except StoreUnavailable:
            await self._compensate(taken, hits)
            raise
        refused = refused_at >= 0
        if refused:
            await self._compensate(taken, hits)
            for keys in taken:
                for key in keys:
                    counts[key] -= hits
            # Not stepped: read as they stand, so every descriptor's answer is as one atomic step's.
            counts.update(await self._current([self._keys(parts) for _, parts in steps[refused_at + 1 :]]))
        results = []
        for descriptor in descriptors:
            values = [counts.get(w.key.encode(), 0) for w in descriptor.windows]
            before = values if refused else [value - hits for value in values]
            exceeded = decide(descriptor.windows, before, hits)
            admitted = not refused and exceeded < 0
            results.append(HitResult(admitted, exceeded, tuple(values), unseeded and descriptor.guarded))
        return results

    @staticmethod
    def _keys(parts: list[DescriptorWindows]) -> list[bytes]:
        return list(dict.fromkeys(w.key.encode() for part in parts for w in part.windows))

    async def _compensate(self, taken: list[list[bytes]], hits: int) -> None:
        if not taken:
            return

        async def one(keys: list[bytes]) -> None:
            await self._cluster.eval(COMPENSATE_SCRIPT, len(keys), *keys, hits)

        outcomes: list[BaseException | None] = [TimeoutError()] * len(taken)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._timeout):
                outcomes = await asyncio.gather(*(one(keys) for keys in taken), return_exceptions=True)
        failed = [outcome for outcome in outcomes if outcome is not None]
        self._metrics.compensation("failed" if failed else "ok")
        if failed:
            # Over-denial until the windows end, never over-admission (see the module docstring).
            log.warning(
                "redis cluster: a refused request's earlier step could not be taken back: %r", failed[0]
            )

    async def _current(self, key_groups: list[list[bytes]]) -> dict[bytes, int]:
        """The counts of keys, one group per slot; what cannot be read in time reads as 0 (it only
        fills in the report of a request already refused)."""
        if not key_groups:
            return {}
        try:
            async with asyncio.timeout(self._timeout):
                values = await asyncio.gather(*(self._cluster.mget(keys) for keys in key_groups))
        except REDIS_FAILURES:
            return {}
        return {
            key: int(value) if value is not None else 0
            for keys, group in zip(key_groups, values, strict=True)
            for key, value in zip(keys, group, strict=True)
        }

    # -- batches -----------------------------------------------------------------------------------

    async def _run_batch(self, batch: list[_Pending]) -> None:
        by_slot: dict[int, list[_Pending]] = {}
        for pending in batch:
            by_slot.setdefault(key_slot(pending[0][0]), []).append(pending)
        by_node: dict[str, list[tuple[int, list[_Pending]]]] = {}
        for slot, group in by_slot.items():
            try:
                node = self._node_of(slot)
            except StoreUnavailable as unavailable:
                _fail(group, unavailable)
                continue
            by_node.setdefault(node, []).append((slot, group))
        await asyncio.gather(*(self._run_node(node, groups) for node, groups in by_node.items()))

    async def _run_node(self, node: str, groups: list[tuple[int, list[_Pending]]]) -> None:
        """One pipeline to one master: one script call per slot. A failure fails only these."""
        started = time.perf_counter()
        # The oldest request's deadline bounds the call: no caller waits longer than its timeout.
        deadline = min(pending[3] for _, group in groups for pending in group) + self._timeout
        try:
            async with asyncio.timeout_at(deadline):
                replies = await self._pipeline(node, groups)
        except Exception as exc:
            if not isinstance(exc, REDIS_FAILURES):
                log.exception("redis cluster batch failed")
            self._node_failed(node, exc)
            _fail([pending for _, group in groups for pending in group], exc)
            return
        failure: BaseException | None = None
        for (_, group), reply in zip(groups, replies, strict=True):
            if isinstance(reply, BaseException):
                failure = reply
                _fail(group, reply)
                continue
            if reply[0] != 1:
                self.seeded = False  # this slot lost its marker: the service starts the rebuild
            at = 1
            for _, _, future, _, size in group:
                if not future.done():
                    future.set_result(reply[at : at + size])
                at += size
        if failure is not None:
            self._node_failed(node, failure)
            return
        elapsed = time.perf_counter() - started
        self._metrics.redis_latency(elapsed)
        self._metrics.redis_node_latency(node, elapsed)

    async def _pipeline(self, node: str, groups: list[tuple[int, list[_Pending]]]) -> list[Any]:
        calls = []
        for slot, group in groups:
            # KEYS[1]: the slot's marker (the counters were not lost), then the requests' counters.
            keys = [seeded_keys()[slot], *(key for pending in group for key in pending[0])]
            calls.append((len(keys), *keys, " ".join(p[1] for p in group)))
            self._metrics.batch_size(len(group))
        replies = await send_pipeline(self._cluster, node, [("EVALSHA", self._sha, *c) for c in calls])
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            # A master that never ran the script (promoted after a failover, restarted) answers NOSCRIPT
            # without running it; EVAL runs it and leaves it cached there.
            again = await send_pipeline(
                self._cluster, node, [("EVAL", HIT_SCRIPT, *calls[i]) for i in missing]
            )
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies

    # -- the rest of the store -----------------------------------------------------------------------

    async def _guarded(self, operation: str, call: Any) -> Any:
        if not self._discovered():
            raise StoreUnavailable("redis cluster: discovering its nodes")
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                result = await call()
        except REDIS_FAILURES as exc:
            self._metrics.redis_error(type(exc).__name__)
            log.warning("redis cluster %s failed: %s", operation, type(exc).__name__)
            raise StoreUnavailable(f"redis {operation} failed: {type(exc).__name__}") from None
        self._metrics.redis_latency(time.perf_counter() - started)
        return result

    async def read(self, keys: Sequence[str], now: datetime) -> list[int]:
        if not keys:
            return []
        values = await self._guarded("read", lambda: self._cluster.mget_nonatomic(list(keys)))
        return [int(v) if v is not None else 0 for v in values]

    async def forget(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        # The counters expire by themselves; forgetting only frees memory sooner.
        with contextlib.suppress(StoreUnavailable):
            await self._guarded("forget", lambda: self._cluster.delete(*keys))

    async def ping(self) -> bool:
        try:
            await self._guarded("ping", lambda: self._cluster.ping(target_nodes=RedisCluster.PRIMARIES))
        except StoreUnavailable:
            return False
        return True

    async def close(self) -> None:
        if self._discovery is not None:
            self._discovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._discovery
        await self._cluster.aclose()


def _fail(pendings: list[_Pending], exc: BaseException) -> None:
    """Every caller gets its answer now: StoreUnavailable, and the caller applies the failure mode."""
    message = str(exc) if isinstance(exc, StoreUnavailable) else f"redis hit failed: {type(exc).__name__}"
    for _, _, future, _, _ in pendings:
        if not future.done():
            future.set_exception(StoreUnavailable(message))

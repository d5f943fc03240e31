"""Where a Redis Cluster's nodes and slots are, for the cluster store (throttle/cluster_store.py): the
startup nodes and connection options from the settings, commands pipelined to one master once their
slots are routed, commands for every slot (the durable-quota marker and its rebuild), and a hash tag
per slot, so that each slot has keys of its own.

The durable-quota marker (redis_store.SEEDED_KEY: "these counters were not lost") is one key per slot
on a cluster, `tw:quota:seeded:{<tag>}`: a script may only touch keys of its own slot, and a master
restarted empty loses exactly its own slots' markers, so exactly its subscriptions' HARD quotas wait
for the rebuild while the other masters' keep counting. The rebuild's token is one key per slot too.
Finding a tag for every slot takes about 200,000 CRC16s (about 0.2 s), once per process, when a
marker is first needed."""

from __future__ import annotations

import asyncio
import secrets
import time
from binascii import crc_hqx
from collections.abc import Sequence
from functools import cache
from typing import Any

from redis.asyncio.cluster import PipelineCommand, RedisCluster
from redis.asyncio.connection import SSLConnection, parse_url
from redis.crc import key_slot
from redis.exceptions import AskError, MovedError, RedisClusterException, RedisError, TryAgainError

from throttle.counters import StoreUnavailable
from throttle.redis_store import (
    _REBUILD_PREFIX,
    _REBUILD_TTL_S,
    _SEED_CHUNK,
    FINISH_SCRIPT,
    SEED_SCRIPT,
    SEEDED_KEY,
)
from tollway.errors import StartupRefused

HostPort = tuple[str, int]
SLOTS = 16384
# Marking, checking or rebuilding every slot's marker (16384 commands) is given this long.
_EVERY_SLOT_TIMEOUT_S = 10.0
# What a failed call raises: RedisClusterException is not a RedisError.
REDIS_FAILURES = (TimeoutError, RedisError, RedisClusterException, OSError)


def cluster_options(url: str) -> dict[str, Any]:
    """Credentials and TLS of TOLLWAY_REDIS_URL, for every node of the cluster."""
    options: dict[str, Any] = dict(parse_url(url)) if url else {}
    options.pop("host", None)
    options.pop("port", None)
    if options.pop("db", 0):
        raise StartupRefused("a Redis Cluster has only database 0: drop the /<db> from TOLLWAY_REDIS_URL")
    if options.pop("connection_class", None) is SSLConnection:
        options["ssl"] = True
    return options


def startup_nodes(url: str, nodes: Sequence[HostPort]) -> list[HostPort]:
    """TOLLWAY_REDIS_NODES, or else the node TOLLWAY_REDIS_URL names."""
    if nodes:
        return list(nodes)
    parsed = parse_url(url)
    return [(str(parsed.get("host", "127.0.0.1")), int(parsed.get("port", 6379)))]


@cache
def slot_tags() -> tuple[str, ...]:
    """For each slot, a short hash tag (hex digits) whose keys land in it."""
    tags: list[str] = [""] * SLOTS
    missing, start, step = SLOTS, 0, 65536
    while missing:
        candidates = [b"%x" % n for n in range(start, start + step)]
        # key_slot of a key `...{tag}` is CRC16 of the tag (CRC-16/XMODEM: binascii.crc_hqx from 0).
        for tag, slot in zip(candidates, [crc_hqx(c, 0) & (SLOTS - 1) for c in candidates], strict=True):
            if not tags[slot]:
                tags[slot] = tag.decode()
                missing -= 1
        start += step
    return tuple(tags)


@cache
def seeded_keys() -> tuple[bytes, ...]:
    """The durable-quota marker of each slot."""
    return tuple(f"{SEEDED_KEY}:{{{tag}}}".encode() for tag in slot_tags())


def rebuild_key(prefix: str, token: str, slot: int) -> bytes:
    return f"{prefix}{token}:{{{slot_tags()[slot]}}}".encode()


async def send_pipeline(cluster: RedisCluster, node: str, commands: list[tuple[Any, ...]]) -> list[Any]:
    """The commands, pipelined on one connection to `node`; each one's reply or error. Their slots were
    routed to this node by redis-py's map already: its own pipeline would route each command again
    (half the client CPU of a decision, measured with bench/cluster_bench.py)."""
    target = cluster.get_node(node_name=node)
    if target is None:
        raise RedisClusterException(f"node {node} is no longer in the cluster")
    pipelined = [PipelineCommand(i, *command) for i, command in enumerate(commands)]
    await target.execute_pipeline(pipelined)
    replies = [command.result for command in pipelined]
    for i, reply in enumerate(replies):
        if isinstance(reply, MovedError | AskError | TryAgainError):
            # The slot moved (resharding, failover): redis-py's client follows the redirection.
            try:
                replies[i] = await cluster.execute_command(*pipelined[i].args)
            except REDIS_FAILURES as exc:
                replies[i] = exc
    return replies


async def per_slot(
    cluster: RedisCluster, commands: dict[int, list[tuple[Any, ...]]], timeout: float
) -> dict[int, list[Any]]:
    """Each slot's commands, pipelined per master, every master at once; each slot's replies.
    StoreUnavailable when any command fails or the whole takes longer than `timeout`."""
    by_node: dict[str, list[int]] = {}
    try:
        for slot in commands:
            by_node.setdefault(cluster.nodes_manager.get_node_from_slot(slot).name, []).append(slot)

        async def one(node: str, slots: list[int]) -> dict[int, list[Any]]:
            replies = await send_pipeline(cluster, node, [c for slot in slots for c in commands[slot]])
            out: dict[int, list[Any]] = {}
            at = 0
            for slot in slots:
                out[slot] = replies[at : at + len(commands[slot])]
                at += len(commands[slot])
            return out

        async with asyncio.timeout(timeout):
            parts = await asyncio.gather(*(one(node, slots) for node, slots in by_node.items()))
    except (*REDIS_FAILURES, KeyError) as exc:
        raise StoreUnavailable(f"redis cluster: {type(exc).__name__}") from None
    replies = {slot: got for part in parts for slot, got in part.items()}
    failed = next((r for got in replies.values() for r in got if isinstance(r, BaseException)), None)
    if failed is not None:
        raise StoreUnavailable(f"redis cluster: {type(failed).__name__}")
    return replies


class SlotMarkers:
    """The cluster store's durable-quota marker, one per slot: `check_seeded` and the rebuild
    (throttle/rebuild.py: begin_rebuild, seed, finish_rebuild), each over every slot."""

    _cluster: RedisCluster
    _discovery_timeout: float
    seeded: bool

    async def check_seeded(self) -> bool:
        replies = await self._every_slot({slot: [("EXISTS", key)] for slot, key in enumerate(seeded_keys())})
        self.seeded = all(got == [1] for got in replies.values())
        return self.seeded

    async def begin_rebuild(self) -> str:
        token = secrets.token_hex(8)
        await self._every_slot(
            {
                slot: [("SET", rebuild_key(_REBUILD_PREFIX, token, slot), "1", "EX", _REBUILD_TTL_S)]
                for slot in range(SLOTS)
            }
        )
        return token

    async def seed(self, token: str, counters: Sequence[tuple[str, int, int]]) -> bool:
        by_slot: dict[int, list[tuple[str, int, int]]] = {}
        for counter in counters:
            by_slot.setdefault(key_slot(counter[0].encode()), []).append(counter)
        commands: dict[int, list[tuple[Any, ...]]] = {}
        for slot, own in by_slot.items():
            for start in range(0, len(own), _SEED_CHUNK):
                chunk = own[start : start + _SEED_CHUNK]
                keys = [rebuild_key(_REBUILD_PREFIX, token, slot), *(name.encode() for name, _, _ in chunk)]
                args = [str(value) for _, count, expire in chunk for value in (count, expire)]
                commands.setdefault(slot, []).append(("EVAL", SEED_SCRIPT, len(keys), *keys, *args))
        replies = await self._every_slot(commands)
        return all(reply == 1 for got in replies.values() for reply in got)

    async def finish_rebuild(self, token: str) -> bool:
        marker = f"{token} {int(time.time())}"
        replies = await self._every_slot(
            {
                slot: [("EVAL", FINISH_SCRIPT, 2, rebuild_key(_REBUILD_PREFIX, token, slot), key, marker)]
                for slot, key in enumerate(seeded_keys())
            }
        )
        done = all(got == [1] for got in replies.values())
        if done:
            self.seeded = True
        return done

    async def _every_slot(self, commands: dict[int, list[tuple[Any, ...]]]) -> dict[int, list[Any]]:
        if self._cluster._initialize:
            async with asyncio.timeout(self._discovery_timeout):
                await self._cluster.initialize()
        return await per_slot(self._cluster, commands, _EVERY_SLOT_TIMEOUT_S)

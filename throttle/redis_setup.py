"""Refuses, at start, a Redis setup that could never count: TOLLWAY_REDIS_MODE=cluster against a Redis
that is not a cluster node, or a node that has cluster support on but is not part of a whole cluster,
or nodes of different clusters; TOLLWAY_REDIS_MODE=standalone against a cluster node (its other
nodes serve most slots: nearly every request would fail) or with TOLLWAY_REDIS_NODES set. Without
this check each of these mistakes only shows as every request answered by the failure mode, with a
log line per cooldown.

A node that cannot be reached is not refused: that is an outage, which the failure mode covers and
which ends by itself, as a later one would. Only what a reachable node says about itself refuses."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from throttle.cluster_nodes import REDIS_FAILURES, HostPort, cluster_options, startup_nodes
from throttle.cluster_store import ClusterCounterStore
from throttle.counters import CounterStore
from tollway.errors import StartupRefused
from tollway.settings import Settings, ThrottleSettings
from tollway.vocabulary import RedisMode

log = logging.getLogger(__name__)

SLOTS = 16384
MODE = Settings.env_name("redis_mode")
NODES = Settings.env_name("redis_nodes")
URL = Settings.env_name("redis_url")


class RedisSetupRefused(StartupRefused):
    """The configured Redis mode does not match what the Redis servers are."""


async def check_redis_setup(settings: ThrottleSettings, store: CounterStore) -> None:
    """Raises RedisSetupRefused for a mode that does not match the servers; on a cluster, discovers its
    nodes before the first request (the store would otherwise do it in the background, failing fast
    meanwhile)."""
    timeout = max(settings.redis_timeout_ms / 1000, 1.0)
    if settings.redis_mode == RedisMode.CLUSTER:
        await _check_cluster(
            startup_nodes(settings.redis_url, settings.redis_nodes), settings.redis_url, timeout
        )
        if isinstance(store, ClusterCounterStore):
            try:
                await store.connect()
            except REDIS_FAILURES as exc:
                log.warning("redis cluster not reachable at start (%s); counting starts when it is", exc)
        return
    if settings.redis_nodes:
        raise RedisSetupRefused(
            f"{NODES} is set, but {MODE}=standalone: set {MODE}=cluster, or unset {NODES}"
        )
    await _check_standalone(settings.redis_url, timeout)


async def _check_standalone(url: str, timeout: float) -> None:
    client = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        info = await client.info("cluster")
    except ResponseError:
        return  # a proxy that does not answer INFO: nothing to tell
    except REDIS_FAILURES as exc:
        log.warning("redis not reachable at start (%s); counting starts when it is", type(exc).__name__)
        return
    finally:
        await client.aclose()
    if int(info.get("cluster_enabled", 0)):
        raise RedisSetupRefused(
            f"{MODE}=standalone, but {URL} names a Redis Cluster node: set {MODE}=cluster "
            f"(and {NODES} to some of its nodes)"
        )


async def _check_cluster(nodes: Sequence[HostPort], url: str, timeout: float) -> None:
    options = cluster_options(url)
    cluster_ids: set[str] = set()
    for host, port in nodes:
        name = f"{host}:{port}"
        client = Redis(
            host=host, port=port, socket_timeout=timeout, socket_connect_timeout=timeout, **options
        )
        try:
            info = await client.info("cluster")
            if not int(info.get("cluster_enabled", 0)):
                raise RedisSetupRefused(
                    f"{MODE}=cluster, but {name} is a standalone Redis (cluster_enabled:0): set "
                    f"{MODE}=standalone, or name nodes of a Redis Cluster in {NODES}"
                )
            state = await client.cluster("INFO")
            assigned = int(state.get("cluster_slots_assigned", 0))
            if assigned < SLOTS:
                raise RedisSetupRefused(
                    f"{MODE}=cluster, but {name} is not part of a whole Redis Cluster ({assigned} of "
                    f"{SLOTS} slots assigned): create the cluster (redis-cli --cluster create) or name "
                    f"its nodes in {NODES}"
                )
            own_id = _text(await client.cluster("MYID"))
            # redis-py parses CLUSTER NODES into {address: {"node_id": ..., ...}}.
            known = {str(node["node_id"]) for node in (await client.cluster("NODES")).values()}
        except RedisSetupRefused:
            raise
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("redis cluster node %s not reachable at start: %s", name, type(exc).__name__)
            continue
        finally:
            await client.aclose()
        if cluster_ids and own_id not in cluster_ids:
            raise RedisSetupRefused(
                f"{NODES} names nodes of different Redis Clusters ({name} is not in the first's): "
                "name nodes of one cluster"
            )
        cluster_ids = cluster_ids or known


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

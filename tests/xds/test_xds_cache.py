"""SnapshotCache: per-type versions that move only with content, and change notification."""

from __future__ import annotations

import asyncio
import threading

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2

from xds.cache import SnapshotCache
from xds.resources import CLUSTER_TYPE, LISTENER_TYPE


def resources(*cluster_names: str, port: int = 80) -> dict:
    listener = listener_pb2.Listener(name="l")
    listener.address.socket_address.port_value = port
    return {
        CLUSTER_TYPE: {name: cluster_pb2.Cluster(name=name) for name in cluster_names},
        LISTENER_TYPE: {"l": listener},
    }


def test_versions_change_only_for_changed_types() -> None:
    cache = SnapshotCache()
    assert cache.current() is None
    first = cache.set_snapshot(resources("a"))
    assert first.generation == 1
    assert dict(first.versions) == {CLUSTER_TYPE: "1", LISTENER_TYPE: "1"}

    assert cache.set_snapshot(resources("a")) is first  # same content: nothing new

    second = cache.set_snapshot(resources("a", "b"))
    assert second.generation == 2
    assert dict(second.versions) == {CLUSTER_TYPE: "2", LISTENER_TYPE: "1"}

    third = cache.set_snapshot(resources("a", "b", port=81))
    assert dict(third.versions) == {CLUSTER_TYPE: "2", LISTENER_TYPE: "3"}
    assert cache.current() is third


def test_snapshot_is_isolated_from_later_mutation() -> None:
    cache = SnapshotCache()
    given = resources("a")
    snapshot = cache.set_snapshot(given)
    given[CLUSTER_TYPE]["a"].connect_timeout.seconds = 9
    assert snapshot.resources[CLUSTER_TYPE]["a"].connect_timeout.seconds == 0
    # The mutated input is new content.
    assert cache.set_snapshot(given).versions[CLUSTER_TYPE] == "2"


async def test_wait_newer_wakes_on_a_change_from_another_thread() -> None:
    cache = SnapshotCache()
    cache.set_snapshot(resources("a"))
    assert (await cache.wait_newer(0)).generation == 1  # already newer: returns at once

    waiting = asyncio.create_task(cache.wait_newer(1))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    setter = threading.Thread(target=cache.set_snapshot, args=(resources("a", "b"),))
    setter.start()
    snapshot = await asyncio.wait_for(waiting, 2)
    setter.join()
    assert snapshot.generation == 2
    assert not cache._waiters  # no waiter left behind


async def test_cancelled_waiter_is_forgotten() -> None:
    cache = SnapshotCache()
    waiting = asyncio.create_task(cache.wait_newer(0))
    await asyncio.sleep(0.01)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert not cache._waiters

"""A Redis mode that does not match the servers refuses to start, with a message naming the setting to
change (throttle/redis_setup.py); an unreachable Redis does not (the failure mode covers outages).
Against real servers: the shared standalone Redis, the session's Redis Cluster, and cluster-enabled
nodes of the test's own (one not joined to any cluster, one that is a whole cluster by itself)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_cluster import RedisClusterNodes
from tests.throttle.throttle_fixtures import SHARED_REDIS_ADDR, SHARED_REDIS_URL, free_port
from throttle.metrics import ThrottleMetrics
from throttle.process import counter_store
from throttle.redis_setup import RedisSetupRefused, check_redis_setup
from tollway.errors import StartupRefused
from tollway.settings import HostPort, ThrottleSettings

# Each test starts or reaches Redis servers.
pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _settings(mode: str, url: str = "", nodes: tuple[HostPort, ...] = ()) -> ThrottleSettings:
    return ThrottleSettings(
        store="redis",
        redis_url=url or SHARED_REDIS_URL,
        redis_timeout_ms=200,
        failure_mode="allow",
        endpoints=(),
        timeout_ms=250,
        redis_mode=mode,
        redis_nodes=nodes,
    )


async def _check(settings: ThrottleSettings) -> None:
    store = counter_store(settings, ThrottleMetrics())
    try:
        await check_redis_setup(settings, store)
    finally:
        await store.close()


@pytest.fixture
def loose_nodes(tmp_path: Path) -> Iterator[RedisClusterNodes]:
    """Two cluster-enabled redis-servers, not joined: the second is made a whole one-node cluster."""
    nodes = RedisClusterNodes(tmp_path, masters=1)
    nodes.start_nodes()
    try:
        with nodes.client(nodes.ports[1]) as client:
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", "0", "16383")
        yield nodes
    finally:
        nodes.stop()


async def test_cluster_mode_against_a_standalone_redis_refuses_to_start() -> None:
    with pytest.raises(RedisSetupRefused, match="is a standalone Redis") as refused:
        await _check(_settings("cluster", SHARED_REDIS_URL))
    assert "TOLLWAY_REDIS_MODE=standalone" in str(refused.value)
    assert isinstance(refused.value, StartupRefused)


async def test_standalone_mode_against_a_cluster_node_refuses_to_start(
    redis_cluster: RedisClusterNodes,
) -> None:
    with pytest.raises(RedisSetupRefused, match="TOLLWAY_REDIS_MODE=cluster"):
        await _check(_settings("standalone", redis_cluster.url))


async def test_cluster_settings_in_standalone_mode_refuse_to_start(redis_cluster: RedisClusterNodes) -> None:
    with pytest.raises(
        RedisSetupRefused, match="TOLLWAY_REDIS_NODES is set, but TOLLWAY_REDIS_MODE=standalone"
    ):
        await _check(_settings("standalone", nodes=redis_cluster.nodes))
    with pytest.raises(StartupRefused, match="only database 0"):
        await _check(_settings("cluster", f"{redis_cluster.url}/3"))


async def test_a_node_list_that_is_not_one_cluster_refuses_to_start(
    redis_cluster: RedisClusterNodes, loose_nodes: RedisClusterNodes
) -> None:
    unjoined, alone = loose_nodes.nodes
    with pytest.raises(RedisSetupRefused, match="not part of a whole Redis Cluster"):
        await _check(_settings("cluster", nodes=(unjoined,)))
    with pytest.raises(RedisSetupRefused, match="different Redis Clusters"):
        await _check(_settings("cluster", nodes=(*redis_cluster.nodes[:2], alone)))
    with pytest.raises(RedisSetupRefused, match="is a standalone Redis"):
        await _check(_settings("cluster", nodes=(redis_cluster.nodes[0], SHARED_REDIS_ADDR)))


async def test_matching_modes_and_unreachable_redis_start(redis_cluster: RedisClusterNodes) -> None:
    await _check(_settings("standalone"))
    await _check(_settings("cluster", redis_cluster.url))
    await _check(_settings("cluster", nodes=redis_cluster.nodes))
    # Nothing listens there: an outage, not a wrong setup; the failure mode answers until it ends.
    await _check(_settings("cluster", nodes=(("127.0.0.1", free_port()),)))
    await _check(_settings("standalone", f"redis://127.0.0.1:{free_port()}/0"))


def test_tollway_serve_prints_the_refusal_and_exits(tmp_path: Path) -> None:
    environment = {
        **os.environ,
        "TOLLWAY_DATA_DIR": str(tmp_path),
        "TOLLWAY_COMPONENTS": "throttle",
        "TOLLWAY_GRPC_ADDR": f"127.0.0.1:{free_port()}",
        "TOLLWAY_ADMIN_ADDR": f"127.0.0.1:{free_port()}",
        "TOLLWAY_RATELIMIT_STORE": "redis",
        "TOLLWAY_REDIS_MODE": "cluster",
        "TOLLWAY_REDIS_URL": SHARED_REDIS_URL,
    }
    result = subprocess.run(
        [sys.executable, "-m", "tollway.app.cli", "serve"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    host, port = SHARED_REDIS_ADDR
    assert f"error: TOLLWAY_REDIS_MODE=cluster, but {host}:{port} is a standalone Redis" in result.stderr
    assert "Traceback" not in result.stderr

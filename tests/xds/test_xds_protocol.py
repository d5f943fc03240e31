"""The ADS servicer against a gRPC client that speaks the SotW protocol the way Envoy does:
nonces, ACKs, NACKs, stale requests and make-before-break ordering."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.rpc import status_pb2

from tollway.catalog.view import PublishedApi
from xds.cache import SnapshotCache
from xds.resources import (
    CLUSTER_TYPE,
    LISTENER_TYPE,
    ROUTE_CONFIG_NAME,
    ROUTE_TYPE,
    GatewayOptions,
    build_resources,
)
from xds.server import AggregatedDiscoveryServicer

OPTIONS = GatewayOptions(
    listener_port=8080, keymgr_endpoints=(("127.0.0.1", 1),), usage_endpoints=(("127.0.0.1", 2),)
)
NODE = "fake-envoy"
# How long "nothing arrives" is watched for; the servicer answers within milliseconds.
QUIET = 0.5


def api(api_id: str) -> PublishedApi:
    return PublishedApi(api_id, api_id, "v1", f"/{api_id}", (f"http://{api_id}.example",))


def snapshot_of(*api_ids: str) -> dict:
    return build_resources([api(i) for i in api_ids], OPTIONS)


def names(response: discovery_pb2.DiscoveryResponse) -> set[str]:
    message = {
        CLUSTER_TYPE: cluster_pb2.Cluster,
    }.get(response.type_url)
    if message is None:
        return {any_.type_url for any_ in response.resources}
    found = set()
    for any_ in response.resources:
        cluster = message()
        any_.Unpack(cluster)
        found.add(cluster.name)
    return found


class FakeEnvoy:
    """One ADS stream; requests are sent explicitly, responses collected by a background reader."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._outbox: asyncio.Queue[discovery_pb2.DiscoveryRequest | None] = asyncio.Queue()
        self.inbox: asyncio.Queue[discovery_pb2.DiscoveryResponse] = asyncio.Queue()
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        self.call = stub.StreamAggregatedResources(self._requests())
        self._reader = asyncio.create_task(self._read())
        self._first = True

    async def _requests(self) -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
        while (request := await self._outbox.get()) is not None:
            yield request

    async def _read(self) -> None:
        async for response in self.call:
            self.inbox.put_nowait(response)

    def send(
        self,
        type_url: str,
        *,
        version: str = "",
        nonce: str = "",
        resource_names: tuple[str, ...] = (),
        error: str | None = None,
    ) -> None:
        request = discovery_pb2.DiscoveryRequest(
            type_url=type_url, version_info=version, response_nonce=nonce, resource_names=resource_names
        )
        if self._first:  # like Envoy's set_node_on_first_message_only
            request.node.id = NODE
            self._first = False
        if error is not None:
            request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        self._outbox.put_nowait(request)

    def subscribe(self, type_url: str) -> None:
        self.send(type_url, resource_names=(ROUTE_CONFIG_NAME,) if type_url == ROUTE_TYPE else ())

    def ack(self, response: discovery_pb2.DiscoveryResponse) -> None:
        names_ = (ROUTE_CONFIG_NAME,) if response.type_url == ROUTE_TYPE else ()
        self.send(
            response.type_url, version=response.version_info, nonce=response.nonce, resource_names=names_
        )

    def nack(self, response: discovery_pb2.DiscoveryResponse, accepted_version: str, error: str) -> None:
        names_ = (ROUTE_CONFIG_NAME,) if response.type_url == ROUTE_TYPE else ()
        self.send(
            response.type_url,
            version=accepted_version,
            nonce=response.nonce,
            resource_names=names_,
            error=error,
        )

    async def recv(self, timeout: float = 2.0) -> discovery_pb2.DiscoveryResponse:
        return await asyncio.wait_for(self.inbox.get(), timeout)

    async def expect(self, type_url: str) -> discovery_pb2.DiscoveryResponse:
        response = await self.recv()
        assert response.type_url == type_url, f"expected {type_url}, got {response.type_url}"
        return response

    async def expect_silence(self, duration: float = QUIET) -> None:
        with pytest.raises(TimeoutError):
            response = await self.recv(duration)
            pytest.fail(f"unexpected {response.type_url} version {response.version_info}")

    async def close(self) -> None:
        self._outbox.put_nowait(None)
        self.call.cancel()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)

    async def sync(self) -> dict[str, discovery_pb2.DiscoveryResponse]:
        """Subscribes to CDS, LDS, RDS the way Envoy starts, ACKing each; returns the responses."""
        got = {}
        self.subscribe(CLUSTER_TYPE)
        got[CLUSTER_TYPE] = await self.expect(CLUSTER_TYPE)
        self.ack(got[CLUSTER_TYPE])
        self.subscribe(LISTENER_TYPE)
        got[LISTENER_TYPE] = await self.expect(LISTENER_TYPE)
        self.ack(got[LISTENER_TYPE])
        self.subscribe(ROUTE_TYPE)
        got[ROUTE_TYPE] = await self.expect(ROUTE_TYPE)
        self.ack(got[ROUTE_TYPE])
        return got


@pytest.fixture
async def ads() -> AsyncIterator[tuple[SnapshotCache, AggregatedDiscoveryServicer, grpc.aio.Channel]]:
    cache = SnapshotCache()
    servicer = AggregatedDiscoveryServicer(cache, {NODE})
    server = grpc.aio.server()
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield cache, servicer, channel
    finally:
        await channel.close()
        await server.stop(grace=None)


@pytest.fixture
async def envoy(ads: tuple) -> AsyncIterator[FakeEnvoy]:
    client = FakeEnvoy(ads[2])
    try:
        yield client
    finally:
        await client.close()


async def wait_for(predicate, timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_first_requests_are_answered_in_order_and_acks_recorded(ads: tuple, envoy: FakeEnvoy) -> None:
    cache, servicer, _ = ads
    cache.set_snapshot(snapshot_of("a"))
    envoy.subscribe(CLUSTER_TYPE)
    envoy.subscribe(LISTENER_TYPE)
    cds = await envoy.expect(CLUSTER_TYPE)
    assert cds.version_info == "1" and cds.nonce
    assert names(cds) == {"tollway_keymgr", "tollway_usage", "api_a"}
    # LDS waits until Envoy runs the clusters its listener uses.
    await envoy.expect_silence()
    envoy.ack(cds)
    lds = await envoy.expect(LISTENER_TYPE)
    envoy.ack(lds)
    envoy.subscribe(ROUTE_TYPE)
    rds = await envoy.expect(ROUTE_TYPE)
    assert len(rds.resources) == 1
    envoy.ack(rds)
    assert len({cds.nonce, lds.nonce, rds.nonce}) == 3

    await wait_for(lambda: servicer.acks[ROUTE_TYPE] == 1)
    node = servicer.node(NODE)
    assert node is not None
    assert node.accepted_versions == {CLUSTER_TYPE: "1", LISTENER_TYPE: "1", ROUTE_TYPE: "1"}
    assert dict(servicer.responses_sent) == {CLUSTER_TYPE: 1, LISTENER_TYPE: 1, ROUTE_TYPE: 1}
    await envoy.expect_silence()


async def test_no_response_before_the_first_snapshot(ads: tuple, envoy: FakeEnvoy) -> None:
    cache, _, _ = ads
    envoy.subscribe(CLUSTER_TYPE)
    await envoy.expect_silence(0.2)
    cache.set_snapshot(snapshot_of("a"))
    assert (await envoy.expect(CLUSTER_TYPE)).version_info == "1"


async def test_nacked_version_is_never_resent_and_newer_snapshot_is(ads: tuple, envoy: FakeEnvoy) -> None:
    cache, servicer, _ = ads
    cache.set_snapshot(snapshot_of("a"))
    await envoy.sync()

    cache.set_snapshot(snapshot_of("a", "b"))
    cds = await envoy.expect(CLUSTER_TYPE)
    assert cds.version_info == "2"
    envoy.nack(cds, accepted_version="1", error="cluster api_b: bad field")
    # Neither the rejected CDS again, nor the RDS that needs its cluster.
    await envoy.expect_silence()
    assert servicer.nacks[CLUSTER_TYPE] == 1
    node = servicer.node(NODE)
    assert node is not None
    assert node.rejected_versions(CLUSTER_TYPE) == {"2"}
    assert node.accepted_versions[CLUSTER_TYPE] == "1"
    assert node.last_error[CLUSTER_TYPE] == "cluster api_b: bad field"

    # Envoy asking again (ACK-style request carrying the NACKed nonce) does not bring it back either.
    envoy.send(CLUSTER_TYPE, version="1", nonce=cds.nonce)
    await envoy.expect_silence()

    cache.set_snapshot(snapshot_of("a", "c"))
    cds3 = await envoy.expect(CLUSTER_TYPE)
    assert cds3.version_info == "3"
    assert names(cds3) == {"tollway_keymgr", "tollway_usage", "api_a", "api_c"}
    envoy.ack(cds3)
    rds3 = await envoy.expect(ROUTE_TYPE)
    assert rds3.version_info == "3"


async def test_stale_nonce_is_ignored(ads: tuple, envoy: FakeEnvoy) -> None:
    cache, servicer, _ = ads
    cache.set_snapshot(snapshot_of("a"))
    await envoy.sync()

    cache.set_snapshot(snapshot_of("a", "b"))
    cds2 = await envoy.expect(CLUSTER_TYPE)
    cache.set_snapshot(snapshot_of("a", "b", "c"))
    cds3 = await envoy.expect(CLUSTER_TYPE)
    assert (cds2.version_info, cds3.version_info) == ("2", "3")

    # Answers to the older response count for nothing: not as ACK, not as NACK.
    envoy.ack(cds2)
    envoy.nack(cds2, accepted_version="1", error="late")
    await envoy.expect_silence()
    assert servicer.stale_requests[CLUSTER_TYPE] == 2
    assert servicer.nacks[CLUSTER_TYPE] == 0
    node = servicer.node(NODE)
    assert node is not None and node.accepted_versions[CLUSTER_TYPE] == "1"

    envoy.ack(cds3)
    rds = await envoy.expect(ROUTE_TYPE)
    assert rds.version_info == "3"


async def test_make_before_break_clusters_added_first_removed_last(ads: tuple, envoy: FakeEnvoy) -> None:
    cache, servicer, _ = ads
    cache.set_snapshot(snapshot_of("old"))
    await envoy.sync()

    # Replace API "old" by "new": a cluster appears and one disappears.
    cache.set_snapshot(snapshot_of("new"))
    cds = await envoy.expect(CLUSTER_TYPE)
    assert names(cds) == {"tollway_keymgr", "tollway_usage", "api_old", "api_new"}
    assert cds.version_info == "2+retained"
    await envoy.expect_silence(0.2)  # routes wait for the clusters
    envoy.ack(cds)

    rds = await envoy.expect(ROUTE_TYPE)  # LDS did not change, so it is not resent
    assert rds.version_info == "2"
    await envoy.expect_silence(0.2)  # the old cluster stays until the routes are applied
    envoy.ack(rds)

    pruned = await envoy.expect(CLUSTER_TYPE)
    assert pruned.version_info == "2"
    assert names(pruned) == {"tollway_keymgr", "tollway_usage", "api_new"}
    envoy.ack(pruned)
    await envoy.expect_silence()
    assert servicer.responses_sent[LISTENER_TYPE] == 1


async def test_route_removal_keeps_cluster_while_rds_is_rejected(ads: tuple, envoy: FakeEnvoy) -> None:
    cache, _, _ = ads
    cache.set_snapshot(snapshot_of("a", "b"))
    await envoy.sync()

    cache.set_snapshot(snapshot_of("a"))
    rds = await envoy.expect(ROUTE_TYPE)  # CDS still holds api_b: nothing to send before RDS
    envoy.nack(rds, accepted_version="1", error="no")
    # Envoy still routes to api_b, so its cluster must not go.
    await envoy.expect_silence()


async def test_rds_answers_only_requested_names(ads: tuple, envoy: FakeEnvoy) -> None:
    cache, _, _ = ads
    cache.set_snapshot(snapshot_of("a"))
    envoy.subscribe(CLUSTER_TYPE)
    envoy.ack(await envoy.expect(CLUSTER_TYPE))
    envoy.subscribe(LISTENER_TYPE)
    envoy.ack(await envoy.expect(LISTENER_TYPE))

    envoy.send(ROUTE_TYPE, resource_names=("someone_else",))
    other = await envoy.expect(ROUTE_TYPE)
    assert len(other.resources) == 0
    envoy.send(ROUTE_TYPE, version=other.version_info, nonce=other.nonce, resource_names=(ROUTE_CONFIG_NAME,))
    ours = await envoy.expect(ROUTE_TYPE)
    assert len(ours.resources) == 1
    assert ours.nonce != other.nonce


async def test_unchanged_types_keep_their_version(ads: tuple, envoy: FakeEnvoy) -> None:
    cache, servicer, _ = ads
    cache.set_snapshot(snapshot_of("a"))
    await envoy.sync()
    again = cache.set_snapshot(snapshot_of("a"))
    assert again.generation == 1
    await envoy.expect_silence(0.2)
    assert dict(servicer.responses_sent) == {CLUSTER_TYPE: 1, LISTENER_TYPE: 1, ROUTE_TYPE: 1}


async def test_reconnect_does_not_resend_a_rejected_version(ads: tuple) -> None:
    cache, servicer, channel = ads
    cache.set_snapshot(snapshot_of("a"))
    first = FakeEnvoy(channel)
    try:
        await first.sync()
        cache.set_snapshot(snapshot_of("a", "b"))
        cds = await first.expect(CLUSTER_TYPE)
        first.nack(cds, accepted_version="1", error="bad")
        await wait_for(lambda: servicer.nacks[CLUSTER_TYPE] == 1)
    finally:
        await first.close()

    second = FakeEnvoy(channel)
    try:
        second.send(CLUSTER_TYPE, version="1")
        await second.expect_silence()
    finally:
        await second.close()


async def test_delta_xds_is_unimplemented(ads: tuple) -> None:
    _, _, channel = ads
    stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)

    async def one_request() -> AsyncIterator[discovery_pb2.DeltaDiscoveryRequest]:
        yield discovery_pb2.DeltaDiscoveryRequest(type_url=CLUSTER_TYPE)

    call = stub.DeltaAggregatedResources(one_request())
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        async for _ in call:
            pass
    assert failure.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_closed_stream_leaves_no_tasks_or_waiters(ads: tuple) -> None:
    cache, servicer, channel = ads

    def stream_tasks() -> list[asyncio.Task]:
        return [
            task
            for task in asyncio.all_tasks()
            if task.get_coro().__qualname__.startswith("AggregatedDiscoveryServicer.")
        ]

    cache.set_snapshot(snapshot_of("a"))
    client = FakeEnvoy(channel)
    await client.sync()
    node = servicer.node(NODE)
    assert node is not None and node.streams == 1
    assert len(cache._waiters) == 1
    assert len(stream_tasks()) == 2  # request reader and snapshot watcher

    await client.close()
    await wait_for(lambda: node.streams == 0)
    assert not cache._waiters
    assert not stream_tasks()

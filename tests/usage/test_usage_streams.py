"""Envoy's AccessLogService, fed malformed and hostile streams over real gRPC: rejected or skipped with
a metric, the service keeps serving, the counts stay right."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc

from tests.support import grpc_server
from tests.usage.usage_entries import entry, message
from tollway.db import Database
from usage.frames import Skeleton
from usage.ingest import Ingestor
from usage.servicer import AccessLogServicer, register
from usage.store import UsageStore

METHOD = "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs"


@pytest.fixture
async def service(database: Database, tmp_path):
    store = UsageStore(database)
    ingestor = Ingestor(tmp_path / "wal", store.apply, sync_interval=0.001, flush_interval=0.02)
    await ingestor.start()
    servicer = AccessLogServicer(ingestor)
    async with grpc_server(lambda s: register(servicer, s)) as channel:
        yield channel, ingestor, store
    await ingestor.stop()


async def send(channel: grpc.aio.Channel, messages: list[als_pb2.StreamAccessLogsMessage]) -> None:
    stub = als_pb2_grpc.AccessLogServiceStub(channel)

    async def stream():
        for item in messages:
            yield item

    await stub.StreamAccessLogs(stream(), timeout=5)


async def counted(ingestor: Ingestor, at_least: int) -> int:
    deadline = time.monotonic() + 5
    while ingestor.metrics.counted < at_least and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # anything extra would show up now
    return ingestor.metrics.counted


async def test_identifier_only_on_the_first_message_counts_every_entry(service) -> None:
    channel, ingestor, _ = service
    await send(channel, [message([entry(), entry()], node_id="n1"), message([entry()]), message([entry()])])
    assert await counted(ingestor, 4) == 4
    assert ingestor.metrics.entries_by_node["n1"] == 4


async def test_stream_without_identifier_is_rejected(service) -> None:
    channel, ingestor, _ = service
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await send(channel, [message([entry()])])
    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert ingestor.metrics.bad_streams["missing_identifier"] == 1
    assert ingestor.metrics.received == 0


async def test_hostile_entries_are_skipped_and_the_rest_counted(service) -> None:
    channel, ingestor, _ = service
    hostile = [
        entry(200, authz={"api_id": "api_1", "subscription_id": {"nested": 1}}),  # wrong type
        entry(200, request_bytes=1 << 60),
        entry(200, start=10.0),
        entry(200, log_type=5),  # periodic
        entry(404, authz={}),  # no API
        entry(200, api_id="\x00" * 10),
    ]
    good = [
        entry(200, authz={"api_id": "api_1", "subscription_id": "s", "unknown_key": "whatever"}),
        entry(500),
    ]
    await send(channel, [message(hostile + good, node_id="n1")])
    assert await counted(ingestor, 2) == 2
    assert sum(ingestor.metrics.skipped.values()) == len(hostile)
    assert ingestor.metrics.skipped["bad_metadata"] == 2


async def test_a_message_cut_in_half_ends_that_stream_only(service) -> None:
    channel, ingestor, _ = service
    whole = message([entry() for _ in range(5)], node_id="n1").SerializeToString()
    raw = channel.stream_unary(METHOD, request_serializer=lambda b: b, response_deserializer=lambda b: b)

    async def cut():
        yield message([entry()], node_id="n1").SerializeToString()
        yield whole[: len(whole) // 2]

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await raw(cut(), timeout=5)
    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert ingestor.metrics.bad_streams["malformed_message"] == 1
    # A healthy stream afterwards is served and counted; the garbage counted nothing.
    await send(channel, [message([entry(), entry()], node_id="n2")])
    total = await counted(ingestor, 2)
    assert total in (2, 3)  # the first, whole message of the cut stream may have been taken
    assert ingestor.metrics.entries_by_node["n2"] == 2


async def test_cancelled_stream_keeps_what_was_received(service) -> None:
    channel, ingestor, _ = service
    stub = als_pb2_grpc.AccessLogServiceStub(channel)
    sent = asyncio.Event()

    async def stream():
        yield message([entry(), entry(), entry()], node_id="n1")
        sent.set()
        await asyncio.sleep(30)

    call = stub.StreamAccessLogs(stream())
    await sent.wait()
    deadline = time.monotonic() + 5
    while ingestor.metrics.received < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    call.cancel()
    assert await counted(ingestor, 3) == 3


async def test_repeated_request_ids_count_once(service) -> None:
    channel, ingestor, _ = service
    same = entry(200, request_id="replayed-id")
    await send(channel, [message([same, same], node_id="n1"), message([same])])
    await send(channel, [message([same], node_id="n1")])
    assert await counted(ingestor, 1) == 1
    await asyncio.sleep(0.1)
    assert ingestor.metrics.duplicates == 3


async def test_a_garbled_entry_inside_a_whole_message_costs_only_itself(service) -> None:
    """The hot path checks framing only; the flush decodes each entry and skips the one it cannot."""
    channel, ingestor, _ = service
    skeleton = Skeleton()
    good = message([entry(), entry()], node_id="n1")
    skeleton.identifier = good.identifier.SerializeToString()
    skeleton.http_logs.log_entry.extend(
        [
            good.http_logs.log_entry[0].SerializeToString(),
            b"\x0a\xff\xff",
            good.http_logs.log_entry[1].SerializeToString(),
        ]
    )
    raw = channel.stream_unary(METHOD, request_serializer=lambda b: b, response_deserializer=lambda b: b)

    async def stream():
        yield skeleton.SerializeToString()

    await raw(stream(), timeout=5)
    assert await counted(ingestor, 2) == 2
    assert ingestor.metrics.skipped["malformed_entry"] == 1
    assert ingestor.metrics.entries_by_node["n1"] == 3

"""Reflection answers in both protocol versions (v1, which current clients try first, and v1alpha) on a
real grpc.aio server: the same service list, and each version can describe a registered service."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]
from grpc_reflection.v1alpha import reflection_pb2 as pb

from tollway.reflection import V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME, enable_server_reflection

HEALTH = "grpc.health.v1.Health"


async def _ask(
    channel: grpc.aio.Channel, service: str, request: pb.ServerReflectionRequest
) -> pb.ServerReflectionResponse:
    call = channel.stream_stream(
        f"/{service}/ServerReflectionInfo",
        request_serializer=pb.ServerReflectionRequest.SerializeToString,
        response_deserializer=pb.ServerReflectionResponse.FromString,
    )
    stream = call()
    await stream.write(request)
    await stream.done_writing()
    responses = [response async for response in stream]
    assert len(responses) == 1
    return responses[0]


@pytest.mark.parametrize("version", [V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME])
async def test_both_versions_list_and_describe(version: str) -> None:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health_aio.HealthServicer(), server)
    enable_server_reflection([HEALTH], server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            listed = await _ask(channel, version, pb.ServerReflectionRequest(list_services=""))
            names = {service.name for service in listed.list_services_response.service}
            assert names == {HEALTH, V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME}

            for symbol in (HEALTH, V1_SERVICE_NAME):
                described = await _ask(
                    channel, version, pb.ServerReflectionRequest(file_containing_symbol=symbol)
                )
                files = described.file_descriptor_response.file_descriptor_proto
                assert files, described
                protos = [descriptor_pb2.FileDescriptorProto.FromString(raw) for raw in files]
                package, _, name = symbol.rpartition(".")
                assert any(p.package == package and name in [s.name for s in p.service] for p in protos)
    finally:
        await server.stop(None)

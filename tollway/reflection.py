"""gRPC server reflection in both versions clients ask for: `grpc.reflection.v1` (current grpcurl,
Postman, grpcui try it first) and `grpc.reflection.v1alpha` (older clients).

grpcio-reflection ships only v1alpha. The two protocols are the same messages under another package
name (same field numbers), so v1 is served by the same servicer with v1alpha's (wire-identical)
serializers, and v1's descriptor, derived from v1alpha's by renaming the package, is added to the default
pool so that reflection can describe itself in either version."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2 as v1alpha
from grpc_reflection.v1alpha._async import ReflectionServicer

V1ALPHA_SERVICE_NAME: str = reflection.SERVICE_NAME
V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"
_V1_FILE = "grpc/reflection/v1/reflection.proto"
_V1ALPHA_PREFIX = ".grpc.reflection.v1alpha."
_V1_PREFIX = ".grpc.reflection.v1."


def _v1_type(name: str) -> str:
    return _V1_PREFIX + name.removeprefix(_V1ALPHA_PREFIX) if name.startswith(_V1ALPHA_PREFIX) else name


def register_v1_descriptor(pool: descriptor_pool.DescriptorPool | None = None) -> None:
    """Adds grpc/reflection/v1/reflection.proto to the pool (once), built from v1alpha's."""
    pool = pool or descriptor_pool.Default()
    try:
        pool.FindFileByName(_V1_FILE)
        return
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    v1alpha.DESCRIPTOR.CopyToProto(proto)
    proto.name = _V1_FILE
    proto.package = "grpc.reflection.v1"
    proto.ClearField("options")
    for message in proto.message_type:
        for field in message.field:
            if field.type_name:
                field.type_name = _v1_type(field.type_name)
    for service in proto.service:
        for method in service.method:
            method.input_type = _v1_type(method.input_type)
            method.output_type = _v1_type(method.output_type)
    pool.AddSerializedFile(proto.SerializeToString())


def enable_server_reflection(service_names: Sequence[str], server: grpc.aio.Server) -> None:
    """Reflection v1 and v1alpha for `service_names` (both reflection services are listed too)."""
    register_v1_descriptor()
    names = [*service_names, V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME]
    servicer = ReflectionServicer(names)
    # The asyncio servicer, registered directly: grpc_reflection's own helper picks the synchronous one
    # for anything that is not a grpc.aio.Server instance (a server's registrar, for one).
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    handler = grpc.method_handlers_generic_handler(
        V1_SERVICE_NAME,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=v1alpha.ServerReflectionRequest.FromString,
                response_serializer=v1alpha.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))

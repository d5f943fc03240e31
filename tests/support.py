"""Small helpers shared by tests: in-process gRPC servers on ephemeral ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc

Registration = Callable[[grpc.aio.Server], None]


@asynccontextmanager
async def grpc_server(
    *registrations: Registration, interceptors: tuple[Any, ...] = ()
) -> AsyncIterator[grpc.aio.Channel]:
    """Starts a grpc.aio server with the given `add_XServicer_to_server`-style registrations on
    127.0.0.1:<free port> and yields a client channel to it."""
    server = grpc.aio.server(interceptors=interceptors)
    for register in registrations:
        register(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        await server.stop(grace=None)

"""The stack on PostgreSQL, reached through a TCP proxy the test can cut: while the database is
unreachable, keymgr keeps answering from its in-memory snapshot and admin writes fail with UNAVAILABLE
(changing nothing); when it is back, writes work again and reach the gateway."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import pytest
from sqlalchemy import text

from tests.conftest import POSTGRES_URL
from tests.e2e.harness import Stack, free_port, start_stack, stop_stack
from tollway.catalog.v1 import catalog_pb2
from tollway.db import Database

pytestmark = pytest.mark.e2e


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to PostgreSQL; `cut()` drops every connection and refuses new ones."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._open = threading.Event()
        self._open.set()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._open.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self._open.clear()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self._sockets.clear()

    def restore(self) -> None:
        self._open.set()

    def close(self) -> None:
        self.cut()
        self._listener.close()


@pytest.fixture
def pg_stack(tmp_path: Path) -> Iterator[tuple[Stack, CuttableProxy]]:
    server = urlsplit(POSTGRES_URL)
    proxy = CuttableProxy((server.hostname or "127.0.0.1", server.port or 5432))
    schema_name = f"tw_test_{secrets.token_hex(6)}"
    url = POSTGRES_URL.replace(server.netloc.rpartition("@")[2], f"127.0.0.1:{proxy.port}")
    stack = start_stack(tmp_path, database_url=url, database_schema=schema_name)
    try:
        yield stack, proxy
    finally:
        proxy.restore()
        stop_stack(stack)
        proxy.close()

        async def drop() -> None:
            db = Database(POSTGRES_URL)
            async with db.engine.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema_name}" CASCADE'))
            await db.dispose()

        asyncio.run(drop())


def test_database_outage_keeps_the_gateway_answering(pg_stack: tuple[Stack, CuttableProxy]) -> None:
    stack, proxy = pg_stack
    assert stack.process.db.is_postgres
    plan = stack.create_plan("outage-plan")
    api = stack.create_api("outage-api", "/outage/v1", [plan.id])
    app = stack.create_application("outage-app")
    stack.subscribe(app.id, api.id, plan.id)
    headers = {"x-api-key": stack.issue_key(app.id).key}
    assert stack.wait_for_status("/outage/v1/x", 200, headers)[0].status == 200

    proxy.cut()
    for _ in range(20):
        assert stack.get("/outage/v1/x", headers).status == 200
    assert stack.get("/outage/v1/x").status == 401
    with pytest.raises(grpc.RpcError) as refused:
        stack.create_plan("written-during-outage")
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "database unavailable" in (refused.value.details() or "")
    assert stack.get("/outage/v1/x", headers).status == 200

    proxy.restore()
    stack.create_plan("written-after-outage")
    names = [p.name for p in stack.call(stack.catalog.ListPlans, catalog_pb2.ListPlansRequest()).plans]
    assert "written-during-outage" not in names and "written-after-outage" in names
    late = stack.create_api("after-outage", "/after-outage/v1", [plan.id])
    assert late.published
    assert stack.wait_for_status("/after-outage/v1/x", 401)[0].status == 401

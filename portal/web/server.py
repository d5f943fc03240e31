"""The web portal's HTTP server: uvicorn inside the Tollway process's event loop.

Uvicorn's own signal handling is switched off (the process stops it, as it stops the gRPC servers),
its logging configuration is left alone, and its access log is off: a password-reset link carries its
token in the path, and request lines are not a place for credentials."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

from tollway.errors import StartupRefused
from tollway.settings import split_addr

log = logging.getLogger(__name__)


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WebServer:
    def __init__(self, app: ASGIApp, addr: str, tls_cert_file: str = "", tls_key_file: str = "") -> None:
        host, port = split_addr(addr)
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan="off",
            access_log=False,
            log_config=None,
            server_header=False,
            proxy_headers=False,
            ssl_certfile=tls_cert_file or None,
            ssl_keyfile=tls_key_file or None,
        )
        # Off for good: uvicorn's protocols log access lines whenever the logger has any handler (a test
        # runner's, say), whatever `access_log` says.
        logging.getLogger("uvicorn.access").disabled = True
        self.addr = addr
        self._server = _EmbeddedServer(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._serve(), name="portal-web")
        while not self._server.started:
            if self._task.done():
                break
            await asyncio.sleep(0.01)
        if self._task.done():
            error = self._task.exception()
            raise StartupRefused(f"the web portal cannot listen on {self.addr}: {error or 'stopped'}")

    async def _serve(self) -> None:
        try:
            await self._server.serve()
        except SystemExit as exit_:  # uvicorn exits when it cannot bind
            raise OSError(f"uvicorn stopped ({exit_.code})") from None

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await self._task
        self._task = None

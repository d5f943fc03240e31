"""A fixed-rate HTTP/1.1 load in asyncio, open loop: request i is due at start + i / rate, whatever
happened to the ones before it, and its latency counts from when it was due (so a slow answer that
holds up later requests shows in their latency too, as wrk2 measures it).

Requests are evenly spaced, each on an idle keep-alive connection (a new one when none is idle, up
to `max_connections`; beyond that a request waits for one, and the wait counts). Used for the latency
at a fixed rate (a few hundred requests per second: the driver's own CPU is a few per cent of a core)
and by the smoke test at low rates. h2load's --rps is not: it sends every connection's request on
the same timer tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping

from bench.loadgen import LoadResult

_MAX_HEADER_BYTES = 64 * 1024


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.open = True

    async def exchange(self, request: bytes) -> int:
        """Sends one request and reads its whole response; returns the status."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        if len(head) > _MAX_HEADER_BYTES:
            raise ValueError("response head too large")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            await self._skip_chunked()
        else:
            await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status

    async def _skip_chunked(self) -> None:
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await self.reader.readexactly(size + 2)
            if size == 0:
                return

    def close(self) -> None:
        self.open = False
        self.writer.close()


class _Pool:
    def __init__(self, host: str, port: int, max_connections: int) -> None:
        self.host, self.port = host, port
        self.idle: list[_Connection] = []
        self.slots = asyncio.Semaphore(max_connections)
        self.all: list[_Connection] = []

    async def acquire(self) -> _Connection:
        await self.slots.acquire()
        while self.idle:
            connection = self.idle.pop()
            if connection.open:
                return connection
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except BaseException:
            self.slots.release()
            raise
        connection = _Connection(reader, writer)
        self.all.append(connection)
        return connection

    def release(self, connection: _Connection) -> None:
        if connection.open:
            self.idle.append(connection)
        self.slots.release()

    def close(self) -> None:
        for connection in self.all:
            if connection.open:
                connection.close()


def _request_bytes(host: str, port: int, path: str, headers: Mapping[str, str]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def paced(
    host: str,
    port: int,
    path: str,
    headers: Mapping[str, str],
    *,
    rate: float,
    seconds: float,
    max_connections: int = 64,
    timeout: float = 10.0,
) -> LoadResult:
    """Sends round(rate * seconds) GETs, evenly spaced over `seconds`; waits for the last answer."""
    if rate <= 0 or seconds <= 0:
        raise ValueError("rate and seconds must be positive")
    request = _request_bytes(host, port, path, headers)
    pool = _Pool(host, port, max_connections)
    answers: list[tuple[int, float]] = []

    async def one(due: float) -> None:
        status = 0
        connection = None
        try:
            connection = await pool.acquire()
            status = await asyncio.wait_for(connection.exchange(request), timeout)
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            if connection is not None:
                connection.close()
        finally:
            if connection is not None:
                pool.release(connection)
        answers.append((status, (time.perf_counter() - due) * 1000.0))

    count = max(1, round(rate * seconds))
    tasks = []
    start = time.perf_counter() + 0.01
    try:
        for index in range(count):
            due = start + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(due)))
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            pool.close()
    return LoadResult.of(seconds, answers)


def run_paced(
    url_host: str, port: int, path: str, headers: Mapping[str, str], *, rate: float, seconds: float
) -> LoadResult:
    """`paced` from synchronous code."""
    return asyncio.run(paced(url_host, port, path, headers, rate=rate, seconds=seconds))

"""Several OS processes serving one Tollway (`tollway serve|up --workers N`, TOLLWAY_WORKERS).

Python answers gRPC on one core per process, so a second core needs a second process. Envoy keeps
one HTTP/2 connection per worker thread per cluster, so processes sharing a port (SO_REUSEPORT)
would not share Envoy's load: each worker listens on a port of its own (the gRPC port + k, the admin
port skipped) and is its own endpoint in Envoy's keymgr, throttle and usage clusters, which round
robin over them.

Worker 0 is this process and runs everything the settings select: xds (Envoy's one ADS stream; a
second control plane would add nothing but a second snapshot), the admin port, billing, and the
hot-path components. Workers 1..N-1 are child processes running the hot path only (keymgr, throttle,
usage: `Settings.for_worker`), each with its own usage WAL (`<wal dir>/worker-<k>`). They get the
parent's resolved settings through a pipe (nothing re-read, so secrets and ports agree), die with the
parent (SIGTERM on its death, even by kill -9), and a worker that exits on its own is started again.
Counters stay exact only on a shared store: several workers on the memory store are refused before
anything starts (throttle/replicas.py). Usage counts each (Envoy node, request id) once whichever
worker received it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import signal
import subprocess
import sys
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tollway import event_loop
from tollway.app.runner import TollwayProcess
from tollway.envoy import die_with_parent
from tollway.errors import StartupRefused
from tollway.logs import configure_logging
from tollway.settings import Settings

log = logging.getLogger(__name__)

_SUPERVISE_SECONDS = 0.25
# A worker that exits this soon after its start waits this long before it is started again.
_QUICK_EXIT_SECONDS = 5.0
_RESTART_BACKOFF_SECONDS = 1.0
_STOP_TIMEOUT_SECONDS = 15.0


class WorkerGroup:
    """Worker 0 in this process (`main`) and workers 1..N-1 as child processes."""

    def __init__(self, settings: Settings, *, ready_timeout: float = 60.0) -> None:
        self.settings = settings
        self.ready_timeout = ready_timeout
        # Refuses an unsafe setup (e.g. the memory store with N > 1) before any worker starts.
        self.main = TollwayProcess(settings.for_worker(0))
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self.started_at: dict[int, float] = {}
        self.restarts = 0
        self._stopping = False
        self._supervisor: asyncio.Task[None] | None = None

    @property
    def addresses(self) -> tuple[str, ...]:
        return self.settings.worker_grpc_addrs

    async def start(self) -> None:
        """Returns once every worker reports SERVING on its health service."""
        await self.main.start()
        try:
            for index in range(1, self.settings.workers):
                self._spawn(index)
            await asyncio.gather(*(self._wait_serving(index) for index in self.children))
        except BaseException:
            await self.stop()
            raise
        if self.children:
            self._supervisor = asyncio.create_task(self._supervise(), name="worker-supervisor")
            log.info("%d workers serving on %s", self.settings.workers, ", ".join(self.addresses))

    def _spawn(self, index: int) -> None:
        command = die_with_parent([sys.executable, "-m", "tollway.app.workers", str(index)])
        # Own session: Ctrl-C reaches this process only, which then stops the workers in order.
        child = subprocess.Popen(command, stdin=subprocess.PIPE, start_new_session=True)
        assert child.stdin is not None
        with child.stdin:
            child.stdin.write(pickle.dumps(self.settings))
        self.children[index] = child
        self.started_at[index] = time.monotonic()

    async def _wait_serving(self, index: int) -> None:
        address = self.addresses[index]
        deadline = time.monotonic() + self.ready_timeout
        async with self.settings.envoy_link.aio_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while True:
                code = self.children[index].poll()
                if code is not None:
                    raise StartupRefused(f"worker {index} ({address}) exited with code {code}; see its log")
                with contextlib.suppress(grpc.aio.AioRpcError):
                    answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if answer.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                if time.monotonic() > deadline:
                    raise StartupRefused(
                        f"worker {index} ({address}) not serving after {self.ready_timeout} s"
                    )
                await asyncio.sleep(0.05)

    async def _supervise(self) -> None:
        """Starts a worker again when it exits on its own (crash, OOM kill, kill -9)."""
        while not self._stopping:
            await asyncio.sleep(_SUPERVISE_SECONDS)
            for index, child in list(self.children.items()):
                code = child.poll()
                if code is None or self._stopping:
                    continue
                log.warning("worker %d exited with code %s; starting it again", index, code)
                if time.monotonic() - self.started_at[index] < _QUICK_EXIT_SECONDS:
                    await asyncio.sleep(_RESTART_BACKOFF_SECONDS)
                if not self._stopping:
                    self._spawn(index)
                    self.restarts += 1

    async def stop(self) -> None:
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for index, child in self.children.items():
            try:
                await asyncio.to_thread(child.wait, _STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                log.warning("worker %d ignored SIGTERM for %.0f s; killing it", index, _STOP_TIMEOUT_SECONDS)
                child.kill()
                await asyncio.to_thread(child.wait)
        self.children.clear()
        await self.main.stop()


async def _serve_worker(settings: Settings) -> None:
    process = TollwayProcess(settings, serve_admin=False)
    await process.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await process.stop()


def main(argv: list[str]) -> int:
    """A child worker: `python -m tollway.app.workers <index>`, the parent's settings on stdin."""
    index = int(argv[1])
    # Written by the parent into a pipe only it holds.
    settings: Settings = pickle.load(sys.stdin.buffer)
    configure_logging(settings, worker=index)
    try:
        event_loop.run(_serve_worker(settings.for_worker(index)))
    except StartupRefused as refused:
        print(f"error: worker {index}: {refused}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

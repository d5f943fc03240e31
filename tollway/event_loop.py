"""How a serving process runs its event loop: uvloop when it is installed (TOLLWAY_EVENT_LOOP=auto, the
default) and the collector tuned for a long-lived server.

Why: the Envoy-facing hot path is mostly the gRPC stack's own work on the event loop (grpc.aio wakes the
loop from its poller thread for every call). uvloop runs that loop in C: measured with grpc.aio 1.85,
a unary call costs the server 10-15 % less CPU, and grpc.aio, asyncpg, redis' asyncio client and
asyncio subprocesses (the Envoy `tollway up` launches) work on it unchanged. `asyncio` keeps the
standard loop (for a platform without uvloop wheels, or to compare).

The collector: everything loaded at start (modules, generated protobuf classes, the components' views)
lives as long as the process, so `freeze_startup_objects()` moves it out of the collector's reach
after the first load, and a larger first-generation threshold keeps short-lived per-request objects
from triggering a collection every 700 allocations."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

EVENT_LOOPS = ("auto", "uvloop", "asyncio")
ENV_VAR = "TOLLWAY_EVENT_LOOP"
# First-generation threshold while serving (CPython's default: 700).
GEN0_THRESHOLD = 20_000
# Set by run(): only a process serving from its entry point tunes the collector (an in-process
# TollwayProcess in a test run leaves the test runner's collector alone).
_serving = False


def loop_factory(choice: str | None = None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop factory for `choice` (default: TOLLWAY_EVENT_LOOP, else auto); None means the
    standard asyncio loop. `uvloop` when uvloop is not installed raises ValueError."""
    chosen = (choice if choice is not None else os.environ.get(ENV_VAR, "") or "auto").strip().lower()
    if chosen not in EVENT_LOOPS:
        raise ValueError(f"{ENV_VAR}={chosen!r} must be one of {', '.join(EVENT_LOOPS)}")
    if chosen == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if chosen == "uvloop":
            raise ValueError(f"{ENV_VAR}=uvloop but uvloop is not installed") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T], choice: str | None = None) -> T:
    """`asyncio.run(main)` on the chosen event loop, with the collector tuned for serving."""
    global _serving
    factory = loop_factory(choice)
    _serving = True
    gc.set_threshold(GEN0_THRESHOLD, *gc.get_threshold()[1:])
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def freeze_startup_objects() -> None:
    """Moves every object alive now to the collector's permanent generation: what a process loads
    before serving is never garbage, and scanning it again in every full collection costs the hot
    path pauses. Only in a process started by `run()`."""
    if not _serving:
        return
    gc.collect()
    gc.freeze()
    log.debug("collector: %d startup objects frozen", gc.get_freeze_count())

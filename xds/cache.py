"""What Envoy should see: the latest resources, versioned per type. Kept apart from the protocol
(xds.server), as go-control-plane splits its snapshot cache from its server.

A type's version changes only when that type's content changes, so an unrelated catalog edit does
not make Envoy re-apply (and re-warm) clusters or listeners. `set_snapshot` may be called from any
thread; stream handlers await `wait_newer` on their own event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from google.protobuf.message import Message

from xds.resources import Resources


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One consistent set of resources. generation grows by one with every change."""

    generation: int
    versions: Mapping[str, str]  # type URL → version of that type's resources
    resources: Mapping[str, Mapping[str, Message]]  # type URL → name → message; do not mutate


def _fingerprint(by_name: Mapping[str, Message]) -> dict[str, bytes]:
    return {name: message.SerializeToString(deterministic=True) for name, message in by_name.items()}


def _frozen_copy(by_name: Mapping[str, Message]) -> Mapping[str, Message]:
    # Copies, so a caller reusing its messages cannot change what was already versioned.
    copies: dict[str, Message] = {}
    for name, message in by_name.items():
        copy = type(message)()
        copy.CopyFrom(message)
        copies[name] = copy
    return MappingProxyType(copies)


@dataclass(slots=True, eq=False)  # identity hash: waiters live in a set
class _Waiter:
    loop: asyncio.AbstractEventLoop
    event: asyncio.Event = field(default_factory=asyncio.Event)


class SnapshotCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._fingerprints: dict[str, dict[str, bytes]] = {}
        # One counter for all types, so "version 7" names the same catalog change in every type.
        self._counter = 0
        self._waiters: set[_Waiter] = set()

    def current(self) -> Snapshot | None:
        """The latest snapshot, or None before the first set_snapshot."""
        return self._snapshot

    def set_snapshot(self, resources: Resources) -> Snapshot:
        """Makes `resources` what Envoy should see; returns the snapshot now current (the same one when
        nothing changed)."""
        with self._lock:
            previous = self._snapshot
            fingerprints = {type_url: _fingerprint(by_name) for type_url, by_name in resources.items()}
            changed = [
                type_url
                for type_url in fingerprints.keys() | self._fingerprints.keys()
                if fingerprints.get(type_url) != self._fingerprints.get(type_url)
            ]
            if previous is not None and not changed:
                return previous
            self._counter += 1
            version = str(self._counter)
            old_versions = previous.versions if previous is not None else {}
            snapshot = Snapshot(
                generation=self._counter,
                versions=MappingProxyType(
                    {t: version if t in changed else old_versions[t] for t in fingerprints}
                ),
                resources=MappingProxyType({t: _frozen_copy(by_name) for t, by_name in resources.items()}),
            )
            self._snapshot = snapshot
            self._fingerprints = fingerprints
            waiters = list(self._waiters)
        for waiter in waiters:
            # Safe from any thread; a waiter whose loop is gone simply is not woken.
            try:
                waiter.loop.call_soon_threadsafe(waiter.event.set)
            except RuntimeError:
                with self._lock:
                    self._waiters.discard(waiter)
        return snapshot

    async def wait_newer(self, generation: int) -> Snapshot:
        """Returns the first snapshot whose generation is above `generation` (at once if there is one)."""
        waiter = _Waiter(asyncio.get_running_loop())
        with self._lock:
            self._waiters.add(waiter)
        try:
            while True:
                snapshot = self._snapshot
                if snapshot is not None and snapshot.generation > generation:
                    return snapshot
                await waiter.event.wait()
                waiter.event.clear()
        finally:
            with self._lock:
                self._waiters.discard(waiter)

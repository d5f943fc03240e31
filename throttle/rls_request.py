"""A RateLimitRequest as the throttle reads it: its parts (domain, descriptors, hits), a cache of them
bounded in bytes, and a log that reports bad requests by count rather than one line (or traceback)
each."""

from __future__ import annotations

import logging
import sys

from envoy.service.ratelimit.v3 import rls_pb2

log = logging.getLogger(__name__)

# A RateLimitRequest from Envoy for Tollway's routes is about 200 bytes; anything near this is not one.
MAX_REQUEST_BYTES = 16 * 1024
_PARTS_CACHE_BYTES = 8 * 1024 * 1024
_PARTS_CACHE_ENTRY_BYTES = 2 * 1024
# Requests that fail the same way are logged at most once per interval, with a count.

Parts = tuple[str, list[dict[str, str]], int]


class RequestPartsCache:
    """Serialized request → its parts. Envoy sends the same few descriptors over and over; reading a
    fresh message's fields through the protobuf wrappers costs several times what serializing it does.

    Bounded in bytes (keys and parts as sys.getsizeof counts them), not entries, and filled only with
    requests the service accepted: bounded by count and filled with anything, 150 distinct 1 MB
    requests used to keep 482 MB. The oldest entries go first."""

    def __init__(
        self, max_bytes: int = _PARTS_CACHE_BYTES, max_entry_bytes: int = _PARTS_CACHE_ENTRY_BYTES
    ) -> None:
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        self.bytes = 0
        self._entries: dict[bytes, tuple[Parts, int]] = {}

    def get(self, key: bytes) -> Parts | None:
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def put(self, key: bytes, parts: Parts) -> None:
        if key in self._entries:
            return
        cost = _size_of(key, parts)
        if cost > self.max_entry_bytes:
            return
        while self._entries and self.bytes + cost > self.max_bytes:
            oldest = next(iter(self._entries))
            self.bytes -= self._entries.pop(oldest)[1]
        self._entries[key] = (parts, cost)
        self.bytes += cost

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)


def _size_of(key: bytes, parts: Parts) -> int:
    domain, descriptors, _ = parts
    size = sys.getsizeof(key) + sys.getsizeof(parts) + sys.getsizeof(domain) + sys.getsizeof(descriptors)
    for entries in descriptors:
        size += sys.getsizeof(entries) + sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in entries.items())
    # The cache's own dict slot and (parts, cost) tuple.
    return size + 100


def read_parts(request: rls_pb2.RateLimitRequest) -> Parts:
    hits = request.hits_addend
    descriptors = []
    for descriptor in request.descriptors:
        descriptors.append({entry.key: entry.value for entry in descriptor.entries})
        if descriptor.HasField("hits_addend"):
            hits = descriptor.hits_addend.value
    return request.domain, descriptors, hits

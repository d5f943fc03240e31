"""Pure logic: the analytics dimensions of one access-log entry (API resource as method and route,
response status code, destination upstream) and their hourly and daily sums.

A route is the path the client sent (Envoy's original path when the route rewrote it), without its
query, with id-like segments (numbers, UUIDs, long hex or token-like strings) written `{id}`, and at
most 6 segments deep. Paths are the caller's to choose, so what they can cost is bounded twice: the
normalized route is at most 200 characters, and each API keeps at most `MAX_ROUTES_PER_API` distinct
routes (per usage replica; the least recently seen are forgotten first); a route beyond that is
counted as "(other)". Status codes are 0-999 (classify refuses the rest); destinations are the
gateway's own upstream endpoints."""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.data.accesslog.v3 import accesslog_pb2

# (method, route, status code, destination)
Detail = tuple[str, str, int, str]
OTHER_ROUTE = "(other)"
MAX_ROUTE_CHARS = 200
MAX_SEGMENTS = 6
MAX_ROUTES_PER_API = 100
MAX_APIS = 10_000
GRANULARITY_SECONDS = {"hour": 3600, "day": 86400}
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
_PLAIN_SEGMENT = re.compile(r"^[A-Za-z][A-Za-z0-9._~-]{0,31}$")
_HEXISH = re.compile(r"^[0-9a-fA-F-]{8,}$")


def _segment(segment: str) -> str:
    if _PLAIN_SEGMENT.match(segment) and not _HEXISH.match(segment):
        digits = sum(c.isdigit() for c in segment)
        # Words may carry a version digit (v1, oauth2); token-like strings are mostly digits or long.
        if digits <= 2 or digits * 4 < len(segment):
            return segment
    return "{id}"


# Paths repeat (a few routes carry most traffic): short ones are normalized once, from a bounded cache
# (its memory at most _CACHED_PATHS times _CACHED_PATH_CHARS characters of keys, whatever callers send).
_CACHED_PATHS = 4096
_CACHED_PATH_CHARS = 256


def normalize_route(path: str) -> str:
    """`/users/123/orders?x=1` → `/users/{id}/orders`; the empty path is `/`."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    return _cached_route(path) if len(path) <= _CACHED_PATH_CHARS else _route(path)


def _route(path: str) -> str:
    segments = [s for s in path.split("/") if s]
    deeper = len(segments) > MAX_SEGMENTS
    route = "/" + "/".join(_segment(s) for s in segments[:MAX_SEGMENTS])
    if deeper:
        route += "/…"
    return route[:MAX_ROUTE_CHARS]


_cached_route = lru_cache(maxsize=_CACHED_PATHS)(_route)


def detail_of(entry: accesslog_pb2.HTTPAccessLogEntry) -> Detail:
    request = entry.request
    method = base_pb2.RequestMethod.Name(request.request_method) if request.request_method else ""
    if method not in _METHODS:
        method = "OTHER"
    route = normalize_route(request.original_path or request.path)
    status = int(entry.response.response_code.value)
    destination = ""
    upstream = entry.common_properties.upstream_remote_address
    if upstream.HasField("socket_address"):
        address = upstream.socket_address
        destination = f"{address.address}:{address.port_value}"[:MAX_ROUTE_CHARS]
    return method, route, status, destination


class RouteCap:
    """At most `per_api` distinct routes per API, for at most `apis` APIs (least recently seen first
    out); other routes are OTHER_ROUTE."""

    def __init__(self, per_api: int = MAX_ROUTES_PER_API, apis: int = MAX_APIS) -> None:
        self.per_api = per_api
        self.apis = apis
        self._routes: OrderedDict[str, OrderedDict[str, None]] = OrderedDict()

    def route(self, api_id: str, route: str) -> str:
        known = self._routes.get(api_id)
        if known is None:
            known = self._routes[api_id] = OrderedDict()
            while len(self._routes) > self.apis:
                self._routes.popitem(last=False)
        else:
            self._routes.move_to_end(api_id)
        if route in known:
            known.move_to_end(route)
            return route
        if len(known) >= self.per_api:
            return OTHER_ROUTE
        known[route] = None
        return route

    def tracked(self) -> int:
        return sum(len(routes) for routes in self._routes.values())


@dataclass
class DetailAggregate:
    """Sums per (granularity, window start, api, subscription, application, method, route, status,
    destination): [requests, latency_us_sum]."""

    rows: dict[tuple[Any, ...], list[int]] = field(default_factory=dict)

    def add(
        self, minute: int, api: str, sub: str, app: str, detail: Detail, latency_us: int, cap: RouteCap
    ) -> None:
        method, route, status, destination = detail
        route = cap.route(api, route)
        for granularity, seconds in GRANULARITY_SECONDS.items():
            key = (granularity, minute - minute % seconds, api, sub, app, method, route, status, destination)
            sums = self.rows.get(key)
            if sums is None:
                self.rows[key] = [1, latency_us]
            else:
                sums[0] += 1
                sums[1] += latency_us

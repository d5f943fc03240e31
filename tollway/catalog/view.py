"""Read-only views of the catalog that other components consume (xds/ builds Envoy config from these)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PublishedApi:
    """One published API as the gateway routes it."""

    id: str
    name: str
    version: str
    # Path prefix on the gateway, e.g. "/weather/v1": no trailing slash, never "/" alone.
    context_path: str
    # http:// or https:// URLs; all of one API share scheme and path (validated by the catalog).
    upstream_urls: tuple[str, ...]

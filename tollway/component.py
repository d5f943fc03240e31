"""The one shape every component has inside a Tollway process.

A component (keymgr, throttle, usage, billing, xds, and the admin services) exposes one `Component`
object; `tollway/app/registry.py` lists them and the runner and the CLI loop over that list, so
neither names a component. The `Component` exists without a process: it registers CLI commands and
says what it adds to Envoy's configuration (that holds even when it runs in another replica).
`build` makes its `RunningComponent` inside a process: servicers for the Envoy-facing and admin
servers, the change-feed listeners it follows, background start/stop and metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import typer

from tollway.settings import Settings

# Types only: every `tollway` command imports this module, and the database layer and Envoy's protos
# take longer to load than the command needs.
if TYPE_CHECKING:
    import grpc
    from envoy.config.cluster.v3 import cluster_pb2
    from envoy.config.route.v3 import route_components_pb2
    from envoy.extensions.filters.network.http_connection_manager.v3 import (
        http_connection_manager_pb2 as hcm_pb2,
    )
    from prometheus_client.registry import Collector

    from tollway.admission import LimitGate
    from tollway.catalog.store import CatalogStore
    from tollway.changes import ChangeFeed, ChangeListener
    from tollway.db import Database


def service_name(module: Any, service: str) -> str:
    """Full name of a service defined in a generated *_pb2 module (for health and reflection)."""
    return str(module.DESCRIPTOR.services_by_name[service].full_name)


@dataclass(frozen=True)
class GrpcService:
    """One gRPC service: its full name (health and reflection list it) and how to add its servicer."""

    full_name: str
    add_to_server: Callable[[grpc.aio.Server], None]


@dataclass(frozen=True)
class GatewayContribution:
    """What a component adds to the gateway's Envoy configuration (xds/ builds it into GatewayOptions):
    HTTP filters between ext_authz and the router, the clusters they call, rate-limit actions on
    every API route."""

    http_filters: tuple[hcm_pb2.HttpFilter, ...] = ()
    clusters: tuple[cluster_pb2.Cluster, ...] = ()
    route_rate_limits: tuple[route_components_pb2.RateLimit, ...] = ()

    @classmethod
    def combine(cls, parts: Iterable[GatewayContribution]) -> GatewayContribution:
        """All parts in order (filters run in the order the registry lists their components)."""
        chosen = tuple(parts)
        return cls(
            http_filters=tuple(f for part in chosen for f in part.http_filters),
            clusters=tuple(c for part in chosen for c in part.clusters),
            route_rate_limits=tuple(r for part in chosen for r in part.route_rate_limits),
        )


@dataclass(frozen=True)
class ProcessContext:
    """What a Tollway process shares with the components it runs (the core only)."""

    db: Database
    changes: ChangeFeed
    catalog: CatalogStore
    # Every registered component's contribution, combined: what Envoy is to be told.
    gateway: GatewayContribution


class RunningComponent(Protocol):
    """A component inside one process. Subclass it to inherit the empty defaults.

    The defaults end in an explicit `return`: a Protocol method whose body is only a docstring counts
    as abstract to type checkers, and subclasses that keep a default must stay instantiable."""

    def envoy_services(self) -> Sequence[GrpcService]:
        """Services on the Envoy-facing server (no token; Envoy calls them)."""
        return ()

    def admin_services(self) -> Sequence[GrpcService]:
        """Services on the admin server (bearer token, optional TLS)."""
        return ()

    def consumer_services(self) -> Sequence[GrpcService]:
        """Services on the consumer server (TOLLWAY_PORTAL_GRPC_ADDR): reachable by API consumers, who
        authenticate per call with their own session, never with the admin token."""
        return ()

    def change_listeners(self) -> Sequence[ChangeListener]:
        """Called once when the change feed starts, then after every committed change."""
        return ()

    def metrics_collectors(self) -> Sequence[Collector]:
        """What it adds to the process's Prometheus endpoint (usually its own registry)."""
        return ()

    def limit_gate(self) -> LimitGate | None:
        """The plan limits it keeps, for another component of the process to apply in its own answer
        (TOLLWAY_THROTTLE_MODE=authz: the throttle's, applied by keymgr's Check); None = none."""
        return None

    def use_limit_gate(self, gate: LimitGate | None) -> None:
        """Receives the process's limit gate (None when no component here keeps limits) before the
        servers start. A component that must apply limits and gets None raises StartupRefused."""
        return None

    def ready(self) -> bool:
        """True once it can answer from a complete view. Until then (and until each of its change
        listeners completed its first full load) the health service reports its services
        NOT_SERVING."""
        return True

    def healthy(self) -> bool:
        """False while something its Envoy-facing services cannot answer without is unreachable (the
        throttle's counters in deny mode): the health service then reports those services NOT_SERVING,
        so Envoy's health checks move traffic to other replicas; True again once it is back. Polled
        twice a second: it must only read state that background work keeps (never probe here)."""
        return True

    async def start(self) -> None:
        """Background work, started before the servers and before the change feed's first round (so
        its view may still be loading)."""
        return None

    async def stop(self) -> None:
        """Releases what `start` or the constructor acquired; called after the servers stopped."""
        return None


class Component(Protocol):
    """One component as the composition root knows it. Subclass it to inherit the empty defaults."""

    @property
    def name(self) -> str:
        """Its value in TOLLWAY_COMPONENTS (tollway.settings.ALL_COMPONENTS)."""
        ...

    def register_cli(self, app: typer.Typer) -> None:
        """Adds its commands to the `tollway` command."""
        return None

    def gateway_contribution(self, settings: Settings) -> GatewayContribution:
        """What Envoy needs to reach it, whether or not it runs in this process."""
        return GatewayContribution()

    def refuse_unsafe(self, settings: Settings) -> None:
        """Raises StartupRefused (a message, not a traceback) when these settings would make it count
        wrongly, e.g. several workers each keeping their own memory counters. Called before a process
        that runs it starts anything."""
        return None

    def build(self, settings: Settings, context: ProcessContext) -> RunningComponent:
        """Its state in a process that runs it (TOLLWAY_COMPONENTS names it)."""
        ...

"""throttle/ as the composition root sees it: its CLI commands, what Envoy needs to call it (the
ratelimit filter after ext_authz, its cluster, descriptors on every API route; nothing in the fused
mode, where keymgr's Check applies the limits), and its state in a process (throttle/process.py).
Imported by every `tollway` command, so the rest loads on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from throttle.cli import register
from tollway.component import Component, GatewayContribution, ProcessContext
from tollway.settings import Settings
from tollway.vocabulary import ThrottleMode

if TYPE_CHECKING:
    from throttle.process import Throttle


class ThrottleComponent(Component):
    name = "throttle"

    def register_cli(self, app: typer.Typer) -> None:
        register(app)

    def gateway_contribution(self, settings: Settings) -> GatewayContribution:
        from throttle import envoy_config

        throttle, link = settings.throttle, settings.envoy_link
        if throttle.mode == ThrottleMode.AUTHZ:
            # Fused mode: keymgr's Check applies the limits; Envoy needs no ratelimit filter, cluster
            # or descriptors.
            return GatewayContribution()
        return GatewayContribution(
            http_filters=(envoy_config.ratelimit_filter(throttle.timeout_ms, throttle.failure_mode, link),),
            clusters=(envoy_config.throttle_cluster(throttle.endpoints, link),),
            route_rate_limits=envoy_config.route_rate_limits(),
        )

    def refuse_unsafe(self, settings: Settings) -> None:
        from throttle.replicas import refuse_memory_store_workers

        refuse_memory_store_workers(settings.throttle)

    def build(self, settings: Settings, context: ProcessContext) -> Throttle:
        from throttle.process import Throttle

        return Throttle(settings.throttle, context.db, context.changes.committed)


COMPONENT = ThrottleComponent()

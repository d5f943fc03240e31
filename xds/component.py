"""xds/ as the composition root sees it: its state in a process (xds/process.py), which pushes
Envoy's configuration built from the catalog and every component's contribution. Imported by every
`tollway` command, so the rest loads on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tollway.component import Component, ProcessContext
from tollway.settings import Settings

if TYPE_CHECKING:
    from xds.process import Xds


class XdsComponent(Component):
    name = "xds"

    def build(self, settings: Settings, context: ProcessContext) -> Xds:
        from xds.process import Xds, gateway_options

        gateway = settings.gateway
        return Xds(gateway_options(gateway, context.gateway), context.catalog, gateway.envoy_nodes)


COMPONENT = XdsComponent()

"""Every component a Tollway process can host, in the order they are wired: servicers registered,
change listeners subscribed, background work started (and stopped in reverse), CLI commands added,
Envoy filters placed after ext_authz."""

from __future__ import annotations

from typing import TYPE_CHECKING

from billing.component import COMPONENT as BILLING
from keymgr.component import COMPONENT as KEYMGR
from portal.component import COMPONENT as PORTAL
from throttle.component import COMPONENT as THROTTLE
from tollway.app.admin import COMPONENT as ADMIN
from tollway.component import Component, GatewayContribution
from tollway.settings import ALL_COMPONENTS, Settings
from usage.component import COMPONENT as USAGE
from xds.component import COMPONENT as XDS

if TYPE_CHECKING:
    from xds.resources import GatewayOptions

COMPONENTS: tuple[Component, ...] = (ADMIN, XDS, KEYMGR, THROTTLE, USAGE, BILLING, PORTAL)

# TOLLWAY_COMPONENTS (parsed in the core) accepts exactly the registered names.
if tuple(component.name for component in COMPONENTS) != ALL_COMPONENTS:
    raise RuntimeError(f"the registry's components differ from ALL_COMPONENTS {ALL_COMPONENTS}")


def gateway_contribution(settings: Settings) -> GatewayContribution:
    """What every registered component adds to Envoy's configuration, wherever it runs."""
    return GatewayContribution.combine(component.gateway_contribution(settings) for component in COMPONENTS)


def gateway_options(settings: Settings) -> GatewayOptions:
    """The gateway's options as a process with these settings pushes them to Envoy."""
    from xds.process import gateway_options as xds_gateway_options

    return xds_gateway_options(settings.gateway, gateway_contribution(settings))

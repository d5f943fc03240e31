"""Tollway's settings: declared once per field (declare.py: variable, file key, parser), the settings
object and its parts (model.py, parts.py), the loader merging environment, config file and defaults
(loader.py), and what a server fills in (resolve.py). Import from here."""

from tollway.settings.declare import (
    ALL_COMPONENTS,
    ENV_PREFIX,
    WORKER_COMPONENTS,
    EnvVar,
    HostPort,
    env,
    split_addr,
)
from tollway.settings.gateway import GatewaySettings
from tollway.settings.model import LOG_FORMATS, Settings
from tollway.settings.parts import (
    AdminClientSettings,
    DatabaseSettings,
    KeymgrSettings,
    ThrottleSettings,
    UsageSettings,
)

__all__ = [
    "ALL_COMPONENTS",
    "ENV_PREFIX",
    "LOG_FORMATS",
    "WORKER_COMPONENTS",
    "AdminClientSettings",
    "DatabaseSettings",
    "EnvVar",
    "GatewaySettings",
    "HostPort",
    "KeymgrSettings",
    "Settings",
    "ThrottleSettings",
    "UsageSettings",
    "env",
    "split_addr",
]

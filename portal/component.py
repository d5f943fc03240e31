"""portal/ as the composition root sees it: its CLI commands and its state in a process
(portal/process.py). Imported by every `tollway` command, so the rest loads on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from portal.cli import register
from tollway.component import Component, ProcessContext
from tollway.settings import Settings

if TYPE_CHECKING:
    from portal.process import Portal


class PortalComponent(Component):
    name = "portal"

    def register_cli(self, app: typer.Typer) -> None:
        register(app)

    def build(self, settings: Settings, context: ProcessContext) -> Portal:
        from portal.backend import admin_credentials
        from portal.config import PortalSettings
        from portal.process import Portal

        return Portal(PortalSettings.of(settings), context, admin_credentials(settings))


COMPONENT = PortalComponent()

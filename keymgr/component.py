"""keymgr/ as the composition root sees it: its state in a process (keymgr/process.py). Its
StoreService is part of the admin services (tollway/app/admin.py); its CLI commands are its own. Imported by
every `tollway` command, so the rest loads on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from keymgr.cli import register
from tollway.component import Component, ProcessContext
from tollway.settings import Settings

if TYPE_CHECKING:
    from keymgr.process import Keymgr


class KeymgrComponent(Component):
    name = "keymgr"

    def register_cli(self, app: typer.Typer) -> None:
        register(app)

    def build(self, settings: Settings, context: ProcessContext) -> Keymgr:
        from keymgr.process import Keymgr

        return Keymgr(settings.keymgr, context.db)


COMPONENT = KeymgrComponent()

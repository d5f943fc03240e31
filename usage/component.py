"""usage/ as the composition root sees it: its CLI commands and its state in a process
(usage/process.py). Imported by every `tollway` command, so the rest loads on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from tollway.component import Component, ProcessContext
from tollway.settings import Settings
from usage.cli import register

if TYPE_CHECKING:
    from usage.process import Usage


class UsageComponent(Component):
    name = "usage"

    def register_cli(self, app: typer.Typer) -> None:
        register(app)

    def build(self, settings: Settings, context: ProcessContext) -> Usage:
        from usage.process import Usage

        return Usage(settings.usage, context.db)


COMPONENT = UsageComponent()

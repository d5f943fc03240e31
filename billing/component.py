"""billing/ as the composition root sees it: its CLI commands and its state in a process
(billing/process.py). Imported by every `tollway` command, so the rest loads on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from billing.cli import register
from tollway.component import Component, ProcessContext
from tollway.settings import Settings

if TYPE_CHECKING:
    from billing.process import Billing


class BillingComponent(Component):
    name = "billing"

    def register_cli(self, app: typer.Typer) -> None:
        register(app)

    def build(self, settings: Settings, context: ProcessContext) -> Billing:
        from billing.process import Billing
        from billing.webhook_delivery import WebhookSettings

        return Billing(
            settings.admin_client,
            context.db,
            context.changes,
            WebhookSettings.of(settings),
            event_retention_days=settings.event_retention_days,
        )


COMPONENT = BillingComponent()

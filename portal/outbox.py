"""Where the portal's messages to consumers go (password-reset links): a pluggable outbox.

The embedded default writes each message to its own file in a private directory (0700, files 0600)
under the data directory, and logs one line naming the file. The message itself never goes to the
log: a reset link is a credential, and the log is read by more people than the account's owner. A
deployment with mail plugs in its own `Outbox` (anything with `async send(message)`)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from tollway.private_files import private_dir, write_private

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    to: str
    subject: str
    # May carry a credential (a reset link): kept out of repr so logging the message cannot leak it.
    body: str = field(repr=False)
    # Who it concerns, for the log line (an account id, never the address or the body).
    account_id: str = ""


class Outbox(Protocol):
    async def send(self, message: OutboxMessage) -> None: ...


class FileOutbox:
    """One RFC 5322-style text file per message in `directory`, readable only by the Tollway user."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, message: OutboxMessage) -> None:
        path = await asyncio.to_thread(self._write, message)
        log.info(
            "portal message %r for account %s written to the outbox: %s",
            message.subject,
            message.account_id or "-",
            path,
        )

    def _write(self, message: OutboxMessage) -> Path:
        private_dir(self.directory)
        now = datetime.now(UTC)
        path = self.directory / f"{now:%Y%m%dT%H%M%S}-{secrets.token_hex(4)}.eml"
        text = (
            f"To: {message.to}\nSubject: {message.subject}\nDate: {now:%a, %d %b %Y %H:%M:%S +0000}\n\n"
            f"{message.body}\n"
        )
        write_private(path, text)
        return path


class MemoryOutbox:
    """Keeps messages in a list (tests, and embedding the portal in another program)."""

    def __init__(self) -> None:
        self.messages: list[OutboxMessage] = []

    async def send(self, message: OutboxMessage) -> None:
        self.messages.append(message)

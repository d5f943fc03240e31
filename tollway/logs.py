"""How every Tollway process logs: text lines (the default) or one JSON object per line for a log
pipeline (TOLLWAY_LOG_FORMAT=json), a level for everything (TOLLWAY_LOG_LEVEL) and per component
(TOLLWAY_LOG_LEVELS=throttle=debug,usage=warning; a component is the first part of a logger's name),
and the request id of the request being served where there is one.

A JSON line has `time` (UTC, RFC 3339, milliseconds), `level`, `component`, `logger`, `message`,
`request_id` when the line was written while serving a request that has one (servicers set
`REQUEST_ID`: ext_authz Check to Envoy's x-request-id, the admin port to the caller's x-request-id
metadata), `worker` in a worker process, and `exception` with the traceback when there is one.

No secret in any line: the code never logs keys or tokens, and, as a second line of defence, every
line passes a redaction that replaces the process's own secrets (admin token, key-hash secret, Envoy
token, portal secret) and anything shaped like an API key with `[redacted]`."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tollway.settings import Settings

REQUEST_ID: ContextVar[str] = ContextVar("tollway_request_id", default="")
REDACTED = "[redacted]"
# The shape of an API key (keymgr/keys.py: tw_<key id>_<secret>, base32 lower case); a test keeps the
# two in step. Key ids alone (tw_<id>_…, as keys are shown after creation) are not secret.
API_KEY_PATTERN = re.compile(r"tw_[a-z2-7]{8,}_[a-z2-7]{16,}")
# Secrets shorter than this are not searched for (they would redact ordinary words).
_MIN_SECRET_CHARS = 8
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class Redactor:
    """Replaces the given secrets and anything shaped like an API key."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        known = sorted({s for s in secrets if len(s) >= _MIN_SECRET_CHARS}, key=len, reverse=True)
        parts = [re.escape(secret) for secret in known] + [API_KEY_PATTERN.pattern]
        self._pattern = re.compile("|".join(parts))

    def __call__(self, text: str) -> str:
        return self._pattern.sub(REDACTED, text)


class TextFormatter(logging.Formatter):
    def __init__(self, redact: Redactor, worker: int | None = None) -> None:
        prefix = f"worker {worker} " if worker is not None else ""
        super().__init__(_TEXT_FORMAT.replace("%(name)s", prefix + "%(name)s"))
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", "") or REQUEST_ID.get()
        if request_id:
            line += f" request_id={request_id}"
        return self._redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring)."""

    def __init__(self, redact: Redactor, worker: int | None = None) -> None:
        super().__init__()
        self._redact = redact
        self._worker = worker

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "component": record.name.split(".", 1)[0],
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", "") or REQUEST_ID.get()
        if request_id:
            document["request_id"] = request_id
        if self._worker is not None:
            document["worker"] = self._worker
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            document["exception"] = record.exc_text
        # A message cannot break the line: json.dumps escapes newlines.
        return self._redact(json.dumps(document, ensure_ascii=False, default=str))


# The first parts of Tollway's logger names (the `component` of a JSON line).
LOG_COMPONENTS = frozenset({"tollway", "keymgr", "throttle", "usage", "billing", "portal", "xds", "bench"})


def secrets_of(settings: Settings) -> list[str]:
    """The process's own secrets (resolved settings carry the generated ones too)."""
    return [
        settings.admin_token,
        settings.key_hash_secret,
        settings.envoy_token,
        settings.portal_secret,
    ]


def configure_logging(settings: Settings, worker: int | None = None) -> None:
    """The root handler on stderr in the chosen format, the levels, and the redaction."""
    redact = Redactor(secrets_of(settings))
    formatter: logging.Formatter = (
        JsonFormatter(redact, worker) if settings.log_format == "json" else TextFormatter(redact, worker)
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # The levels are exactly the settings': a component not named follows TOLLWAY_LOG_LEVEL, whatever
    # an earlier configuration in this process left on it.
    named = dict(settings.log_levels)
    for component in sorted(LOG_COMPONENTS | set(named)):
        logging.getLogger(component).setLevel(named.get(component, "NOTSET").upper())

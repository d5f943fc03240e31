"""How a setting is declared: its environment variable, the key it has in a config file, and the parser
both go through. Every field of `Settings` carries one `EnvVar` (`field(default=..., metadata=env(NAME,
parser))`), so a setting is declared once and both sources are derived from that declaration.

The file key is derived mechanically from the variable: `TOLLWAY_REDIS_URL` is `url` in the table
`[redis]` (the first word is the table, the rest the key), or `redis_url` at the top level; a one-word
variable (`TOLLWAY_WORKERS`) is a top-level key (`workers`). Older variable names (aliases) have no
file key."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tollway.vocabulary import ThrottleMode

ENV_PREFIX = "TOLLWAY_"
HostPort = tuple[str, int]

# What one process can host. A replica may run any subset (e.g. usage alone, so it can be killed and
# restarted without touching the gateway's key checks).
ALL_COMPONENTS = ("admin", "xds", "keymgr", "throttle", "usage", "billing", "portal")
# What a worker beyond the first runs: the Envoy-facing hot path (each worker is its own endpoint in
# Envoy's clusters). xds, the admin port and billing stay in worker 0: one ADS stream per Envoy and one
# admin port need no second process.
WORKER_COMPONENTS = ("keymgr", "throttle", "usage")


@dataclass(frozen=True)
class EnvVar:
    """Where a field comes from: TOLLWAY_<names[0]> (later names are older aliases) and its parser."""

    names: tuple[str, ...]
    parse: Callable[[str], Any]

    @property
    def variable(self) -> str:
        return ENV_PREFIX + self.names[0]

    @property
    def file_key(self) -> str:
        """The dotted key in a config file: `redis.url` for TOLLWAY_REDIS_URL, `workers` for
        TOLLWAY_WORKERS (`redis_url`, flat, is accepted too)."""
        table, _, key = self.names[0].lower().partition("_")
        return f"{table}.{key}" if key else table

    def read(self, environ: Mapping[str, str]) -> tuple[str, str] | None:
        """(variable, value) of the first name set to a non-empty value, else of the first name set at
        all, else None."""
        present = [
            (ENV_PREFIX + name, environ[ENV_PREFIX + name])
            for name in self.names
            if ENV_PREFIX + name in environ
        ]
        return next((item for item in present if item[1]), present[0] if present else None)


def env(name: str | tuple[str, ...], parse: Callable[[str], Any] = str) -> dict[str, EnvVar]:
    """Field metadata: read from TOLLWAY_<name> with `parse` (the field's default when unset)."""
    return {"env": EnvVar((name,) if isinstance(name, str) else name, parse)}


# --------------------------------------------------------------------------------------------------
# Parsers: from the variable's text (a file's value is turned into the same text first)
# --------------------------------------------------------------------------------------------------


def split_addr(addr: str) -> HostPort:
    """`host:port` (IPv6 hosts in brackets) as a (host, port) pair; ValueError otherwise."""
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"address must be host:port, got {addr!r}")
    return host.strip("[]"), int(port)


def endpoints(value: str) -> tuple[HostPort, ...]:
    return tuple(split_addr(part.strip()) for part in value.split(",") if part.strip())


def components(value: str) -> tuple[str, ...]:
    chosen = tuple(part.strip() for part in value.split(",") if part.strip())
    unknown = sorted(set(chosen) - set(ALL_COMPONENTS))
    if unknown:
        raise ValueError(f"unknown components {unknown}; choose from {', '.join(ALL_COMPONENTS)}")
    return chosen or ALL_COMPONENTS


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        chosen = value.strip().lower()
        if chosen not in allowed:
            raise ValueError(f"{value!r} must be one of {', '.join(allowed)}")
        return chosen

    return parse


def names(value: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))


def throttle_mode(value: str) -> ThrottleMode:
    return ThrottleMode(choice(*ThrottleMode)(value))


def flag(value: str) -> bool:
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"{value!r} must be true or false")


def number(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"must be a whole number, got {value!r}") from None


def seconds(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"must be a number, got {value!r}") from None


def positive_int(value: str) -> int:
    parsed = number(value)
    if parsed <= 0:
        raise ValueError(f"must be a positive number, got {value!r}")
    return parsed


def positive_seconds(value: str) -> float:
    parsed = seconds(value)
    if not parsed > 0 or parsed == float("inf"):
        raise ValueError(f"must be a positive number, got {value!r}")
    return parsed


def optional_path(value: str) -> Path | None:
    return Path(value) if value else None


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def log_level(value: str) -> str:
    return choice(*LOG_LEVELS)(value).upper()


def log_levels(value: str) -> tuple[tuple[str, str], ...]:
    """`throttle=debug,usage=warning`: a level per component (a logger name's first part)."""
    pairs: list[tuple[str, str]] = []
    for part in value.split(","):
        if not part.strip():
            continue
        component, equals, level = part.partition("=")
        if not equals or not component.strip():
            raise ValueError(f"{part.strip()!r} must be component=level, e.g. throttle=debug")
        pairs.append((component.strip(), log_level(level)))
    return tuple(pairs)

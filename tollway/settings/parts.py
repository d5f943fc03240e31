"""Each component's part of the settings (`Settings.keymgr`, `.throttle`, `.usage`,
`.database`, `.admin_client`): what a component receives instead of the whole settings object."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tollway.settings.declare import HostPort
from tollway.vocabulary import RedisMode, ThrottleMode


@dataclass(frozen=True)
class DatabaseSettings:
    url: str
    schema: str
    timeout_ms: int
    connect_timeout_ms: int


@dataclass(frozen=True)
class KeymgrSettings:
    key_hash_secret: str
    key_rotation_grace_seconds: int
    # TOLLWAY_THROTTLE_MODE=authz: Check also applies the plan limits (the throttle's, in this process).
    applies_limits: bool = False


@dataclass(frozen=True)
class ThrottleSettings:
    store: str
    redis_url: str
    redis_timeout_ms: int
    failure_mode: str
    endpoints: tuple[HostPort, ...]
    timeout_ms: int
    mode: ThrottleMode = ThrottleMode.RATELIMIT
    # Worker processes that each run a throttle (the memory store refuses more than one).
    workers: int = 1
    redis_mode: str = RedisMode.STANDALONE.value
    redis_nodes: tuple[HostPort, ...] = ()


@dataclass(frozen=True)
class UsageSettings:
    wal_dir: Path
    wal_sync_ms: int
    flush_ms: int
    envoy_admins: tuple[HostPort, ...]
    sample_seconds: float
    # Copies of each entry Envoy sends (its logs_written counts each copy): completeness divides by it.
    copies: int = 1


@dataclass(frozen=True)
class AdminClientSettings:
    """How a component reaches the admin port of its own process (billing asks usage and throttle)."""

    addr: str
    token: str
    tls: bool

"""One settings object for every Tollway process, read from TOLLWAY_* environment variables."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, replace
from pathlib import Path


def _split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"address must be host:port, got {addr!r}")
    return host.strip("[]"), int(port)


def _endpoints(value: str) -> tuple[tuple[str, int], ...]:
    return tuple(_split_addr(part.strip()) for part in value.split(",") if part.strip())


def _read_or_create_secret(path: Path) -> str:
    """A secret kept in the data directory so it survives restarts (embedded mode only)."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value


# What one process can host. A replica may run any subset (e.g. usage alone, so it can be killed and
# restarted without touching the gateway's key checks).
ALL_COMPONENTS = ("admin", "xds", "keymgr", "throttle", "usage", "billing")


def _components(value: str) -> tuple[str, ...]:
    chosen = tuple(part.strip() for part in value.split(",") if part.strip())
    unknown = sorted(set(chosen) - set(ALL_COMPONENTS))
    if unknown:
        raise ValueError(f"unknown TOLLWAY_COMPONENTS {unknown}; choose from {', '.join(ALL_COMPONENTS)}")
    return chosen or ALL_COMPONENTS


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".tollway")
    components: tuple[str, ...] = ALL_COMPONENTS
    # SQLAlchemy URL; sqlite:/// and postgresql:// are upgraded to their async drivers.
    database_url: str = ""
    # PostgreSQL schema (search_path) to keep Tollway's tables in; empty = the server default.
    database_schema: str = ""
    # Envoy-facing gRPC services (ADS, ext_authz Check, later ShouldRateLimit and StreamAccessLogs).
    grpc_addr: str = "127.0.0.1:18000"
    # Admin gRPC services (catalog, store, later billing): bearer-token protected, on their own port.
    admin_addr: str = "127.0.0.1:18001"
    admin_token: str = ""
    # Server secret for the keyed hash of API keys; never stored in the database.
    key_hash_secret: str = ""
    # Where Envoy listens for API traffic (pushed to Envoy as its listener by xds/).
    gateway_addr: str = "127.0.0.1:8080"
    envoy_admin_addr: str = "127.0.0.1:9901"
    envoy_concurrency: int = 2
    # Where Envoy reaches each Envoy-facing service; defaults to grpc_addr (all in one process).
    keymgr_endpoints: tuple[tuple[str, int], ...] = ()
    usage_endpoints: tuple[tuple[str, int], ...] = ()
    authz_timeout_ms: int = 250
    # Envoy's answer when keymgr cannot be reached: deny (default, fail closed) or allow.
    authz_failure_mode_allow: bool = False
    # How often each replica checks the database's change revision (push via LISTEN/NOTIFY on PostgreSQL).
    change_poll_seconds: float = 0.25
    key_rotation_grace_seconds: int = 24 * 3600
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)

        def get(name: str, default: str) -> str:
            return env.get(f"TOLLWAY_{name}", default)

        base = cls()
        settings = cls(
            data_dir=Path(get("DATA_DIR", str(base.data_dir))),
            components=_components(get("COMPONENTS", "")),
            database_url=get("DATABASE_URL", ""),
            database_schema=get("DATABASE_SCHEMA", ""),
            grpc_addr=get("GRPC_ADDR", base.grpc_addr),
            admin_addr=get("ADMIN_ADDR", base.admin_addr),
            admin_token=get("ADMIN_TOKEN", ""),
            key_hash_secret=get("KEY_HASH_SECRET", ""),
            gateway_addr=get("GATEWAY_ADDR", base.gateway_addr),
            envoy_admin_addr=get("ENVOY_ADMIN_ADDR", base.envoy_admin_addr),
            envoy_concurrency=int(get("ENVOY_CONCURRENCY", str(base.envoy_concurrency))),
            keymgr_endpoints=_endpoints(get("KEYMGR_ENDPOINTS", "")),
            usage_endpoints=_endpoints(get("USAGE_ENDPOINTS", "")),
            authz_timeout_ms=int(get("AUTHZ_TIMEOUT_MS", str(base.authz_timeout_ms))),
            authz_failure_mode_allow=get("AUTHZ_FAILURE_MODE_ALLOW", "false").lower() in ("1", "true", "yes"),
            change_poll_seconds=float(get("CHANGE_POLL_SECONDS", str(base.change_poll_seconds))),
            key_rotation_grace_seconds=int(
                get("KEY_ROTATION_GRACE_SECONDS", str(base.key_rotation_grace_seconds))
            ),
            log_level=get("LOG_LEVEL", base.log_level),
        )
        return settings.resolved()

    def resolved(self) -> Settings:
        """Fills the embedded defaults: SQLite in the data dir, secrets persisted there, local endpoints."""
        database_url = self.database_url or f"sqlite:///{self.data_dir / 'tollway.db'}"
        grpc = (_split_addr(self.grpc_addr),)
        return replace(
            self,
            database_url=database_url,
            admin_token=self.admin_token or _read_or_create_secret(self.data_dir / "admin-token"),
            key_hash_secret=self.key_hash_secret or _read_or_create_secret(self.data_dir / "key-hash-secret"),
            keymgr_endpoints=self.keymgr_endpoints or grpc,
            usage_endpoints=self.usage_endpoints or grpc,
        )

    @property
    def gateway_host_port(self) -> tuple[str, int]:
        return _split_addr(self.gateway_addr)

    @property
    def grpc_host_port(self) -> tuple[str, int]:
        return _split_addr(self.grpc_addr)

    @property
    def admin_host_port(self) -> tuple[str, int]:
        return _split_addr(self.admin_addr)

    @property
    def envoy_admin_host_port(self) -> tuple[str, int]:
        return _split_addr(self.envoy_admin_addr)

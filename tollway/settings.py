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


def _choice(value: str, allowed: tuple[str, ...]) -> str:
    chosen = value.strip().lower()
    if chosen not in allowed:
        raise ValueError(f"{value!r} must be one of {', '.join(allowed)}")
    return chosen


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
    # TLS for the admin port (PEM files); with a client CA, callers must present a certificate (mTLS).
    admin_tls_cert_file: str = ""
    admin_tls_key_file: str = ""
    admin_tls_client_ca_file: str = ""
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
    # throttle/: where rate-limit counters live (memory: one replica only; redis: shared by replicas).
    ratelimit_store: str = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Each Redis call gives up after this long; the answer then follows ratelimit_failure_mode.
    redis_timeout_ms: int = 50
    # When counters cannot be reached: allow (fail open, default) or deny (fail closed).
    ratelimit_failure_mode: str = "allow"
    # Where Envoy reaches ShouldRateLimit; defaults to grpc_addr. Envoy's own deadline for the call.
    throttle_endpoints: tuple[tuple[str, int], ...] = ()
    ratelimit_timeout_ms: int = 250
    # host:port serving this process's Prometheus metrics over HTTP (every component); empty = off.
    metrics_addr: str = ""
    # How often each replica checks the database's change revision (push via LISTEN/NOTIFY on PostgreSQL).
    change_poll_seconds: float = 0.25
    key_rotation_grace_seconds: int = 24 * 3600
    # usage/: local write-ahead log of received access-log entries (default <data_dir>/usage-wal; one
    # directory per usage replica), how often it is fsync'd and applied to the database, and the Envoy
    # admin endpoints whose access-log counters measure completeness (default envoy_admin_addr).
    usage_wal_dir: Path | None = None
    usage_wal_sync_ms: int = 5
    usage_flush_ms: int = 200
    usage_envoy_admins: tuple[tuple[str, int], ...] = ()
    usage_sample_seconds: float = 10.0
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
            admin_tls_cert_file=get("ADMIN_TLS_CERT", ""),
            admin_tls_key_file=get("ADMIN_TLS_KEY", ""),
            admin_tls_client_ca_file=get("ADMIN_TLS_CLIENT_CA", ""),
            key_hash_secret=get("KEY_HASH_SECRET", ""),
            gateway_addr=get("GATEWAY_ADDR", base.gateway_addr),
            envoy_admin_addr=get("ENVOY_ADMIN_ADDR", base.envoy_admin_addr),
            envoy_concurrency=int(get("ENVOY_CONCURRENCY", str(base.envoy_concurrency))),
            keymgr_endpoints=_endpoints(get("KEYMGR_ENDPOINTS", "")),
            usage_endpoints=_endpoints(get("USAGE_ENDPOINTS", "")),
            authz_timeout_ms=int(get("AUTHZ_TIMEOUT_MS", str(base.authz_timeout_ms))),
            authz_failure_mode_allow=get("AUTHZ_FAILURE_MODE_ALLOW", "false").lower() in ("1", "true", "yes"),
            ratelimit_store=_choice(get("RATELIMIT_STORE", base.ratelimit_store), ("memory", "redis")),
            redis_url=get("REDIS_URL", base.redis_url),
            redis_timeout_ms=int(get("REDIS_TIMEOUT_MS", str(base.redis_timeout_ms))),
            ratelimit_failure_mode=_choice(
                get("RATELIMIT_FAILURE_MODE", base.ratelimit_failure_mode), ("allow", "deny")
            ),
            throttle_endpoints=_endpoints(get("THROTTLE_ENDPOINTS", "")),
            ratelimit_timeout_ms=int(get("RATELIMIT_TIMEOUT_MS", str(base.ratelimit_timeout_ms))),
            # TOLLWAY_THROTTLE_METRICS_ADDR: the earlier, throttle-only name, still accepted.
            metrics_addr=get("METRICS_ADDR", "") or get("THROTTLE_METRICS_ADDR", ""),
            change_poll_seconds=float(get("CHANGE_POLL_SECONDS", str(base.change_poll_seconds))),
            key_rotation_grace_seconds=int(
                get("KEY_ROTATION_GRACE_SECONDS", str(base.key_rotation_grace_seconds))
            ),
            usage_wal_dir=Path(env["TOLLWAY_USAGE_WAL_DIR"]) if env.get("TOLLWAY_USAGE_WAL_DIR") else None,
            usage_wal_sync_ms=int(get("USAGE_WAL_SYNC_MS", str(base.usage_wal_sync_ms))),
            usage_flush_ms=int(get("USAGE_FLUSH_MS", str(base.usage_flush_ms))),
            usage_envoy_admins=_endpoints(get("USAGE_ENVOY_ADMINS", "")),
            usage_sample_seconds=float(get("USAGE_SAMPLE_SECONDS", str(base.usage_sample_seconds))),
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
            usage_wal_dir=self.usage_wal_dir or self.data_dir / "usage-wal",
            usage_envoy_admins=self.usage_envoy_admins or (_split_addr(self.envoy_admin_addr),),
            throttle_endpoints=self.throttle_endpoints or grpc,
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

"""One settings object for every Tollway process: every field from its TOLLWAY_* variable, else from
the config file (`tollway.toml`, named by --config or TOLLWAY_CONFIG), else its default.

Each field declares its variable, default and parser once (`field(default=..., metadata=env(NAME,
parser))`, tollway/settings/declare.py, which also derives its file key); tollway/settings/loader.py
is the one loader, and nothing else reads the environment or the file. Components receive their own
part (`Settings.keymgr`, `.gateway`, `.throttle`, `.usage`, `.admin_client`; tollway/settings/parts.py),
not the whole."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from tollway.envoy_auth import EnvoyFacingSecurity, EnvoyLink
from tollway.settings.declare import (
    ALL_COMPONENTS,
    WORKER_COMPONENTS,
    EnvVar,
    HostPort,
    choice,
    components,
    endpoints,
    env,
    flag,
    log_level,
    log_levels,
    names,
    number,
    optional_path,
    positive_int,
    positive_seconds,
    seconds,
    split_addr,
    throttle_mode,
)
from tollway.settings.gateway import GatewaySettings
from tollway.settings.parts import (
    AdminClientSettings,
    DatabaseSettings,
    KeymgrSettings,
    ThrottleSettings,
    UsageSettings,
)
from tollway.vocabulary import EnvoyAuthMode, FailureMode, RedisMode, ThrottleMode

LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default=Path(".tollway"), metadata=env("DATA_DIR", Path))
    components: tuple[str, ...] = field(default=ALL_COMPONENTS, metadata=env("COMPONENTS", components))
    # SQLAlchemy URL; sqlite:/// and postgresql:// are upgraded to their async drivers.
    database_url: str = field(default="", metadata=env("DATABASE_URL"))
    # PostgreSQL schema (search_path) to keep Tollway's tables in; empty = the server default.
    database_schema: str = field(default="", metadata=env("DATABASE_SCHEMA"))
    # Deadlines of every database call, so an unreachable or frozen database fails calls instead of
    # hanging them: one statement (PostgreSQL cancels it server-side too), a wait for a pooled
    # connection, SQLite's wait for the write lock (busy timeout); and opening a connection.
    database_timeout_ms: int = field(default=5000, metadata=env("DATABASE_TIMEOUT_MS", positive_int))
    database_connect_timeout_ms: int = field(
        default=2000, metadata=env("DATABASE_CONNECT_TIMEOUT_MS", positive_int)
    )
    # Envoy-facing gRPC services (ADS, ext_authz Check, ShouldRateLimit and StreamAccessLogs).
    grpc_addr: str = field(default="127.0.0.1:18000", metadata=env("GRPC_ADDR"))
    # How Envoy proves itself to those services: mtls (client certificate, the default), token (a shared
    # bearer token in each call's metadata, where TLS is terminated elsewhere) or none (explicit only).
    envoy_auth: str = field(
        default=EnvoyAuthMode.MTLS.value, metadata=env("ENVOY_AUTH", choice(*EnvoyAuthMode))
    )
    # token mode: the token, or a file holding it; neither = generated into the data dir.
    envoy_token: str = field(default="", repr=False, metadata=env("ENVOY_TOKEN"))
    envoy_token_file: str = field(default="", metadata=env("ENVOY_TOKEN_FILE"))
    # mtls mode, Tollway's side (PEM files): the Envoy-facing port's certificate and key, and the CA
    # that signs Envoy's client certificate. None set = a private CA and both certificates generated
    # into <data_dir>/envoy-tls.
    envoy_tls_cert_file: str = field(default="", metadata=env("ENVOY_TLS_CERT"))
    envoy_tls_key_file: str = field(default="", metadata=env("ENVOY_TLS_KEY"))
    envoy_tls_client_ca_file: str = field(default="", metadata=env("ENVOY_TLS_CLIENT_CA"))
    # mtls mode, Envoy's side, as paths on Envoy's machine (they go into its bootstrap and clusters):
    # the CA that signed Tollway's certificate (default: the client CA), Envoy's certificate and key.
    envoy_tls_ca_file: str = field(default="", metadata=env("ENVOY_TLS_CA"))
    envoy_tls_client_cert_file: str = field(default="", metadata=env("ENVOY_TLS_CLIENT_CERT"))
    envoy_tls_client_key_file: str = field(default="", metadata=env("ENVOY_TLS_CLIENT_KEY"))
    # The name Envoy expects in Tollway's certificate (and sends as SNI), and the one Tollway expects
    # in Envoy's (common name or subject alternative name; empty = any certificate the client CA signed).
    envoy_tls_server_name: str = field(default="tollway", metadata=env("ENVOY_TLS_SERVER_NAME"))
    envoy_tls_client_name: str = field(default="tollway-envoy", metadata=env("ENVOY_TLS_CLIENT_NAME"))
    # The node id of the Envoy `tollway up` starts, and every node id ADS serves (default: that one).
    envoy_node_id: str = field(default="tollway-gateway", metadata=env("ENVOY_NODE_ID"))
    envoy_nodes: tuple[str, ...] = field(default=(), metadata=env("ENVOY_NODES", names))
    # Admin gRPC services (catalog, store, billing, ...): bearer-token protected, on their own port.
    admin_addr: str = field(default="127.0.0.1:18001", metadata=env("ADMIN_ADDR"))
    admin_token: str = field(default="", repr=False, metadata=env("ADMIN_TOKEN"))
    # The most an admin RPC may take (less when the caller's own deadline is nearer); past it the call
    # answers UNAVAILABLE, saying why, instead of hanging on a database that does not answer.
    admin_timeout_ms: int = field(default=30_000, metadata=env("ADMIN_TIMEOUT_MS", positive_int))
    # TLS for the admin port (PEM files); with a client CA, callers must present a certificate (mTLS).
    admin_tls_cert_file: str = field(default="", metadata=env("ADMIN_TLS_CERT"))
    admin_tls_key_file: str = field(default="", metadata=env("ADMIN_TLS_KEY"))
    admin_tls_client_ca_file: str = field(default="", metadata=env("ADMIN_TLS_CLIENT_CA"))
    # The CLI's side of that TLS: the CA that signed the admin port's certificate (TLS), and a client
    # certificate and key (mTLS).
    admin_client_tls_ca_file: str = field(default="", metadata=env("ADMIN_TLS_CA"))
    admin_client_tls_cert_file: str = field(default="", metadata=env("ADMIN_TLS_CLIENT_CERT"))
    admin_client_tls_key_file: str = field(default="", metadata=env("ADMIN_TLS_CLIENT_KEY"))
    # Server secret for the keyed hash of API keys; never stored in the database.
    key_hash_secret: str = field(default="", repr=False, metadata=env("KEY_HASH_SECRET"))
    # Where Envoy listens for API traffic (pushed to Envoy as its listener by xds/).
    gateway_addr: str = field(default="127.0.0.1:8080", metadata=env("GATEWAY_ADDR"))
    # HTTPS there (PEM files where xds/ runs, both or neither; pushed to Envoy over ADS and again when
    # they change), and an address where plain HTTP redirects to it (empty = none).
    gateway_tls_cert_file: str = field(default="", metadata=env("GATEWAY_TLS_CERT"))
    gateway_tls_key_file: str = field(default="", metadata=env("GATEWAY_TLS_KEY"))
    gateway_http_redirect_addr: str = field(default="", metadata=env("GATEWAY_HTTP_REDIRECT_ADDR"))
    envoy_admin_addr: str = field(default="127.0.0.1:9901", metadata=env("ENVOY_ADMIN_ADDR"))
    envoy_concurrency: int = field(default=2, metadata=env("ENVOY_CONCURRENCY", number))
    # Where Envoy reaches each Envoy-facing service; defaults to grpc_addr (all in one process).
    keymgr_endpoints: tuple[HostPort, ...] = field(default=(), metadata=env("KEYMGR_ENDPOINTS", endpoints))
    usage_endpoints: tuple[HostPort, ...] = field(default=(), metadata=env("USAGE_ENDPOINTS", endpoints))
    authz_timeout_ms: int = field(default=250, metadata=env("AUTHZ_TIMEOUT_MS", number))
    # Envoy's answer when keymgr cannot be reached: deny (default, fail closed) or allow.
    authz_failure_mode_allow: bool = field(default=False, metadata=env("AUTHZ_FAILURE_MODE_ALLOW", flag))
    # throttle/: where rate-limit counters live (memory: one replica only; redis: shared by replicas).
    ratelimit_store: str = field(default="memory", metadata=env("RATELIMIT_STORE", choice("memory", "redis")))
    redis_url: str = field(default="redis://127.0.0.1:6379/0", metadata=env("REDIS_URL"))
    # standalone: redis_url is the one Redis. cluster: a Redis Cluster, reached through redis_nodes
    # (host:port,...) or, when those are not set, the node redis_url names; its credentials and TLS
    # apply to every node.
    redis_mode: str = field(
        default=RedisMode.STANDALONE.value, metadata=env("REDIS_MODE", choice(*RedisMode))
    )
    redis_nodes: tuple[HostPort, ...] = field(default=(), metadata=env("REDIS_NODES", endpoints))
    # Each Redis call gives up after this long; the answer then follows ratelimit_failure_mode.
    redis_timeout_ms: int = field(default=50, metadata=env("REDIS_TIMEOUT_MS", number))
    # When counters cannot be reached: allow (fail open, default) or deny (fail closed).
    ratelimit_failure_mode: str = field(
        default=FailureMode.ALLOW.value, metadata=env("RATELIMIT_FAILURE_MODE", choice(*FailureMode))
    )
    # Where Envoy reaches ShouldRateLimit; defaults to grpc_addr. Envoy's own deadline for the call.
    throttle_endpoints: tuple[HostPort, ...] = field(
        default=(), metadata=env("THROTTLE_ENDPOINTS", endpoints)
    )
    ratelimit_timeout_ms: int = field(default=250, metadata=env("RATELIMIT_TIMEOUT_MS", number))
    # ratelimit: Envoy calls ShouldRateLimit after Check; authz (fused): Check applies the limits itself,
    # one gRPC call per request (keymgr and throttle then run in the same process).
    throttle_mode: ThrottleMode = field(
        default=ThrottleMode.RATELIMIT, metadata=env("THROTTLE_MODE", throttle_mode)
    )
    # host:port serving this process's Prometheus metrics over HTTP (every component); empty = off.
    # TOLLWAY_THROTTLE_METRICS_ADDR: the earlier, throttle-only name, still accepted.
    metrics_addr: str = field(default="", metadata=env(("METRICS_ADDR", "THROTTLE_METRICS_ADDR")))
    # How often each replica polls the change log (push via LISTEN/NOTIFY on PostgreSQL), and how long
    # entries are kept: a replica down for longer loads in full when it comes back.
    change_poll_seconds: float = field(default=0.25, metadata=env("CHANGE_POLL_SECONDS", seconds))
    change_retention_seconds: float = field(default=3600.0, metadata=env("CHANGE_RETENTION_SECONDS", seconds))
    key_rotation_grace_seconds: int = field(
        default=24 * 3600, metadata=env("KEY_ROTATION_GRACE_SECONDS", int)
    )
    # usage/: local write-ahead log of received access-log entries (default <data_dir>/usage-wal; one
    # directory per usage replica), how often it is fsync'd and applied to the database, and the Envoy
    # admin endpoints whose access-log counters measure completeness (default envoy_admin_addr).
    usage_wal_dir: Path | None = field(default=None, metadata=env("USAGE_WAL_DIR", optional_path))
    usage_wal_sync_ms: int = field(default=5, metadata=env("USAGE_WAL_SYNC_MS", number))
    usage_flush_ms: int = field(default=200, metadata=env("USAGE_FLUSH_MS", number))
    usage_envoy_admins: tuple[HostPort, ...] = field(
        default=(), metadata=env("USAGE_ENVOY_ADMINS", endpoints)
    )
    usage_sample_seconds: float = field(default=10.0, metadata=env("USAGE_SAMPLE_SECONDS", seconds))
    # Envoy sends each access-log entry to this many usage endpoints at once (disjoint groups of
    # TOLLWAY_USAGE_ENDPOINTS), so a usage replica killed mid-stream loses no entry the others got;
    # usage counts each (node, request id) once. Capped at the number of usage endpoints.
    usage_copies: int = field(default=2, metadata=env("USAGE_COPIES", positive_int))
    # portal/: web pages, consumer gRPC API, public URL (reset links), web TLS, CSRF secret, outbox.
    portal_addr: str = field(default="127.0.0.1:8088", metadata=env("PORTAL_ADDR"))
    portal_grpc_addr: str = field(default="127.0.0.1:18002", metadata=env("PORTAL_GRPC_ADDR"))
    portal_url: str = field(default="", metadata=env("PORTAL_URL"))
    portal_tls_cert_file: str = field(default="", metadata=env("PORTAL_TLS_CERT"))
    portal_tls_key_file: str = field(default="", metadata=env("PORTAL_TLS_KEY"))
    portal_secret: str = field(default="", repr=False, metadata=env("PORTAL_SECRET"))
    portal_outbox_dir: Path | None = field(default=None, metadata=env("PORTAL_OUTBOX_DIR", optional_path))
    # Logs: the level of every logger, a level per component (`throttle=debug,usage=warning`, the first
    # part of a logger's name), and text or JSON lines (tollway/logs.py).
    # billing/ webhooks: the key of the stored signing secrets (default: generated into the data dir),
    # one POST's deadline, attempts before FAILED, the backoff's first/largest delay (s), the poll (s).
    webhook_secret_key: str = field(default="", repr=False, metadata=env("WEBHOOK_SECRET_KEY"))
    webhook_timeout: float = field(default=10.0, metadata=env("WEBHOOK_TIMEOUT", positive_seconds))
    webhook_max_attempts: int = field(default=12, metadata=env("WEBHOOK_MAX_ATTEMPTS", positive_int))
    webhook_retry_base: float = field(default=10.0, metadata=env("WEBHOOK_RETRY_BASE", positive_seconds))
    webhook_retry_max: float = field(default=3600.0, metadata=env("WEBHOOK_RETRY_MAX", positive_seconds))
    webhook_poll: float = field(default=1.0, metadata=env("WEBHOOK_POLL", positive_seconds))
    event_retention_days: int = field(default=30, metadata=env("EVENT_RETENTION_DAYS", positive_int))
    log_level: str = field(default="INFO", metadata=env("LOG_LEVEL", log_level))
    log_levels: tuple[tuple[str, str], ...] = field(default=(), metadata=env("LOG_LEVELS", log_levels))
    log_format: str = field(default="text", metadata=env("LOG_FORMAT", choice(*LOG_FORMATS)))
    # OS processes serving the Envoy-facing services (`--workers` of serve/up wins): worker k > 0 listens
    # on the gRPC port + k (the admin port skipped) and is one more endpoint in Envoy's clusters.
    workers: int = field(default=1, metadata=env("WORKERS", positive_int))
    # Where `tollway up --demo` serves the demo API's upstream (its --demo-upstream option wins).
    demo_upstream_addr: str = field(default="127.0.0.1:8090", metadata=env("DEMO_UPSTREAM_ADDR"))

    @classmethod
    def read_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Every field from its TOLLWAY_* variable, else the config file TOLLWAY_CONFIG names, else its
        default; nothing filled in or created: what a client (the CLI) needs, without the server's
        secrets on disk. A bad value or key raises ConfigError naming where it came from."""
        from tollway.settings.loader import load

        return load(environ).settings

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """A server's settings: `read_env()`, then `resolved()`."""
        return cls.read_env(environ).resolved()

    @classmethod
    def env_name(cls, field_name: str) -> str:
        """The environment variable a field is read from (its current name, not older aliases)."""
        return cls.declaration(field_name).variable

    @classmethod
    def declaration(cls, field_name: str) -> EnvVar:
        declared: EnvVar = cls.__dataclass_fields__[field_name].metadata["env"]
        return declared

    def resolved(self) -> Settings:
        """Fills the embedded defaults: SQLite in the data dir, secrets persisted there, local endpoints;
        refuses (StartupRefused) an Envoy-facing link that cannot work."""
        from tollway.settings.resolve import resolve

        return resolve(self)

    # -- workers -----------------------------------------------------------------------------------

    @property
    def worker_grpc_addrs(self) -> tuple[str, ...]:
        """The Envoy-facing address of each worker: the gRPC port, then the ports after it (the admin
        port skipped, when on the same port range)."""
        host, port = self.grpc_host_port
        admin_port = split_addr(self.admin_addr)[1]
        ports: list[int] = []
        candidate = port
        while len(ports) < self.workers:
            if candidate != admin_port or candidate == port:
                ports.append(candidate)
            candidate += 1
        shown = f"[{host}]" if ":" in host else host
        return tuple(f"{shown}:{p}" for p in ports)

    def for_worker(self, index: int) -> Settings:
        """Worker `index`'s settings (call on resolved settings). Worker 0 is the process as configured;
        worker k > 0 serves only the hot-path components on its own port, keeps its own usage WAL
        (`<wal dir>/worker-<k>`), serves no admin port, samples no Envoy (worker 0 does) and exposes
        its metrics on the metrics port + k."""
        if not 0 <= index < self.workers:
            raise ValueError(f"worker {index} of {self.workers}")
        if index == 0:
            return self
        if self.usage_wal_dir is None:
            raise ValueError("worker settings need resolved() settings")
        metrics_addr = ""
        if self.metrics_addr:
            metrics_host, metrics_port = split_addr(self.metrics_addr)
            metrics_addr = f"{metrics_host}:{metrics_port + index}"
        return replace(
            self,
            grpc_addr=self.worker_grpc_addrs[index],
            components=tuple(name for name in self.components if name in WORKER_COMPONENTS),
            usage_wal_dir=self.usage_wal_dir / f"worker-{index}",
            usage_envoy_admins=(),
            metrics_addr=metrics_addr,
        )

    # -- each component's part ---------------------------------------------------------------------

    @property
    def database(self) -> DatabaseSettings:
        return DatabaseSettings(
            self.database_url,
            self.database_schema,
            self.database_timeout_ms,
            self.database_connect_timeout_ms,
        )

    @property
    def keymgr(self) -> KeymgrSettings:
        return KeymgrSettings(
            self.key_hash_secret,
            self.key_rotation_grace_seconds,
            applies_limits=self.throttle_mode == ThrottleMode.AUTHZ,
        )

    @property
    def gateway(self) -> GatewaySettings:
        return GatewaySettings(
            listener=self.gateway_host_port,
            keymgr_endpoints=self.keymgr_endpoints,
            usage_endpoints=self.usage_endpoints,
            authz_timeout_ms=self.authz_timeout_ms,
            authz_failure_mode_allow=self.authz_failure_mode_allow,
            envoy_link=self.envoy_link,
            envoy_nodes=self.envoy_nodes,
            usage_copies=self.effective_usage_copies,
            tls_cert_file=self.gateway_tls_cert_file,
            tls_key_file=self.gateway_tls_key_file,
            http_redirect=split_addr(redirect) if (redirect := self.gateway_http_redirect_addr) else None,
        )

    @property
    def envoy_link(self) -> EnvoyLink:
        """Envoy's side of the Envoy-facing link (call on resolved settings)."""
        return EnvoyLink(
            mode=EnvoyAuthMode(self.envoy_auth),
            token=self.envoy_token,
            ca_file=self.envoy_tls_ca_file,
            client_cert_file=self.envoy_tls_client_cert_file,
            client_key_file=self.envoy_tls_client_key_file,
            server_name=self.envoy_tls_server_name,
        )

    @property
    def envoy_facing(self) -> EnvoyFacingSecurity:
        """Tollway's side of the Envoy-facing link (call on resolved settings)."""
        return EnvoyFacingSecurity(
            mode=EnvoyAuthMode(self.envoy_auth),
            token=self.envoy_token,
            cert_file=self.envoy_tls_cert_file,
            key_file=self.envoy_tls_key_file,
            client_ca_file=self.envoy_tls_client_ca_file,
            client_name=self.envoy_tls_client_name,
        )

    @property
    def throttle(self) -> ThrottleSettings:
        return ThrottleSettings(
            store=self.ratelimit_store,
            redis_url=self.redis_url,
            redis_timeout_ms=self.redis_timeout_ms,
            failure_mode=self.ratelimit_failure_mode,
            endpoints=self.throttle_endpoints,
            timeout_ms=self.ratelimit_timeout_ms,
            mode=self.throttle_mode,
            workers=self.workers if "throttle" in self.components else 1,
            redis_mode=self.redis_mode,
            redis_nodes=self.redis_nodes,
        )

    @property
    def usage(self) -> UsageSettings:
        """Call on resolved settings (the WAL directory and Envoy admins have defaults by then)."""
        if self.usage_wal_dir is None:
            raise ValueError("usage settings need resolved() settings (no WAL directory yet)")
        return UsageSettings(
            wal_dir=self.usage_wal_dir,
            wal_sync_ms=self.usage_wal_sync_ms,
            flush_ms=self.usage_flush_ms,
            envoy_admins=self.usage_envoy_admins,
            sample_seconds=self.usage_sample_seconds,
            copies=self.effective_usage_copies,
        )

    @property
    def effective_usage_copies(self) -> int:
        """Copies of each access-log entry Envoy sends: TOLLWAY_USAGE_COPIES, at most one per endpoint."""
        return max(1, min(self.usage_copies, len(self.usage_endpoints)))

    @property
    def admin_client(self) -> AdminClientSettings:
        return AdminClientSettings(self.admin_addr, self.admin_token, tls=bool(self.admin_tls_cert_file))

    # -- addresses as (host, port) -----------------------------------------------------------------

    @property
    def gateway_host_port(self) -> HostPort:
        return split_addr(self.gateway_addr)

    @property
    def grpc_host_port(self) -> HostPort:
        return split_addr(self.grpc_addr)

    @property
    def admin_host_port(self) -> HostPort:
        return split_addr(self.admin_addr)

    @property
    def envoy_admin_host_port(self) -> HostPort:
        return split_addr(self.envoy_admin_addr)

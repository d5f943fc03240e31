"""One settings object for every Tollway process, read from TOLLWAY_* environment variables.

Each field declares its environment variable, default and parser in one place
(`field(default=..., metadata=env(NAME, parser))`); `Settings.from_env` is the one loader, and nothing
else reads the environment. Components receive their own part (`Settings.keymgr`, `.gateway`,
`.throttle`, `.usage`, `.admin_client`), not the whole."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from tollway.envoy_auth import EnvoyFacingSecurity, EnvoyLink, token_problem
from tollway.private_files import private_dir, private_file
from tollway.settings_gateway import GatewaySettings
from tollway.vocabulary import EnvoyAuthMode, FailureMode, RedisMode, ThrottleMode

ENV_PREFIX = "TOLLWAY_"
HostPort = tuple[str, int]


def split_addr(addr: str) -> HostPort:
    """`host:port` (IPv6 hosts in brackets) as a (host, port) pair; ValueError otherwise."""
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"address must be host:port, got {addr!r}")
    return host.strip("[]"), int(port)


def _endpoints(value: str) -> tuple[HostPort, ...]:
    return tuple(split_addr(part.strip()) for part in value.split(",") if part.strip())


def _read_or_create_secret(path: Path) -> str:
    """A secret kept in the data directory so it survives restarts (embedded mode only)."""
    if path.exists():
        private_file(path)  # tightens a secret an older version left readable
        return path.read_text().strip()
    private_dir(path.parent)  # the data directory: secrets, database, WAL; the Tollway user's only
    value = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value


# The mtls files (all given, or all generated).
_ENVOY_TLS_FILES = (
    "envoy_tls_cert_file",
    "envoy_tls_key_file",
    "envoy_tls_client_ca_file",
    "envoy_tls_ca_file",
    "envoy_tls_client_cert_file",
    "envoy_tls_client_key_file",
)


# What one process can host. A replica may run any subset (e.g. usage alone, so it can be killed and
# restarted without touching the gateway's key checks).
ALL_COMPONENTS = ("admin", "xds", "keymgr", "throttle", "usage", "billing", "portal")


def _components(value: str) -> tuple[str, ...]:
    chosen = tuple(part.strip() for part in value.split(",") if part.strip())
    unknown = sorted(set(chosen) - set(ALL_COMPONENTS))
    if unknown:
        raise ValueError(f"unknown TOLLWAY_COMPONENTS {unknown}; choose from {', '.join(ALL_COMPONENTS)}")
    return chosen or ALL_COMPONENTS


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        chosen = value.strip().lower()
        if chosen not in allowed:
            raise ValueError(f"{value!r} must be one of {', '.join(allowed)}")
        return chosen

    return parse


def _names(value: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))


def _throttle_mode(value: str) -> ThrottleMode:
    return ThrottleMode(_choice(*ThrottleMode)(value))


def _flag(value: str) -> bool:
    return value.lower() in ("1", "true", "yes")


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError(f"must be a positive number, got {value!r}")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0 or number == float("inf"):
        raise ValueError(f"must be a positive number, got {value!r}")
    return number


def _optional_path(value: str) -> Path | None:
    return Path(value) if value else None


# What a worker beyond the first runs: the Envoy-facing hot path (each worker is its own endpoint in
# Envoy's clusters). xds, the admin port and billing stay in worker 0: one ADS stream per Envoy and one
# admin port need no second process.
WORKER_COMPONENTS = ("keymgr", "throttle", "usage")


@dataclass(frozen=True)
class EnvVar:
    """Where a field comes from: TOLLWAY_<names[0]> (later names are older aliases) and its parser."""

    names: tuple[str, ...]
    parse: Callable[[str], Any]

    def read(self, environ: Mapping[str, str]) -> str | None:
        """The first name set to a non-empty value, else the first name set at all, else None."""
        present = [environ[ENV_PREFIX + name] for name in self.names if ENV_PREFIX + name in environ]
        return next((value for value in present if value), present[0] if present else None)


def env(name: str | tuple[str, ...], parse: Callable[[str], Any] = str) -> dict[str, EnvVar]:
    """Field metadata: read from TOLLWAY_<name> with `parse` (the field's default when unset)."""
    return {"env": EnvVar((name,) if isinstance(name, str) else name, parse)}


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


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default=Path(".tollway"), metadata=env("DATA_DIR", Path))
    components: tuple[str, ...] = field(default=ALL_COMPONENTS, metadata=env("COMPONENTS", _components))
    # SQLAlchemy URL; sqlite:/// and postgresql:// are upgraded to their async drivers.
    database_url: str = field(default="", metadata=env("DATABASE_URL"))
    # PostgreSQL schema (search_path) to keep Tollway's tables in; empty = the server default.
    database_schema: str = field(default="", metadata=env("DATABASE_SCHEMA"))
    # Deadlines of every database call, so an unreachable or frozen database fails calls instead of
    # hanging them: one statement (PostgreSQL cancels it server-side too), a wait for a pooled
    # connection, SQLite's wait for the write lock (busy timeout); and opening a connection.
    database_timeout_ms: int = field(default=5000, metadata=env("DATABASE_TIMEOUT_MS", _positive_int))
    database_connect_timeout_ms: int = field(
        default=2000, metadata=env("DATABASE_CONNECT_TIMEOUT_MS", _positive_int)
    )
    # Envoy-facing gRPC services (ADS, ext_authz Check, ShouldRateLimit and StreamAccessLogs).
    grpc_addr: str = field(default="127.0.0.1:18000", metadata=env("GRPC_ADDR"))
    # How Envoy proves itself to those services: mtls (client certificate, the default), token (a shared
    # bearer token in each call's metadata, where TLS is terminated elsewhere) or none (explicit only).
    envoy_auth: str = field(
        default=EnvoyAuthMode.MTLS.value, metadata=env("ENVOY_AUTH", _choice(*EnvoyAuthMode))
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
    envoy_nodes: tuple[str, ...] = field(default=(), metadata=env("ENVOY_NODES", _names))
    # Admin gRPC services (catalog, store, billing, ...): bearer-token protected, on their own port.
    admin_addr: str = field(default="127.0.0.1:18001", metadata=env("ADMIN_ADDR"))
    admin_token: str = field(default="", repr=False, metadata=env("ADMIN_TOKEN"))
    # The most an admin RPC may take (less when the caller's own deadline is nearer); past it the call
    # answers UNAVAILABLE, saying why, instead of hanging on a database that does not answer.
    admin_timeout_ms: int = field(default=30_000, metadata=env("ADMIN_TIMEOUT_MS", _positive_int))
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
    envoy_concurrency: int = field(default=2, metadata=env("ENVOY_CONCURRENCY", int))
    # Where Envoy reaches each Envoy-facing service; defaults to grpc_addr (all in one process).
    keymgr_endpoints: tuple[HostPort, ...] = field(default=(), metadata=env("KEYMGR_ENDPOINTS", _endpoints))
    usage_endpoints: tuple[HostPort, ...] = field(default=(), metadata=env("USAGE_ENDPOINTS", _endpoints))
    authz_timeout_ms: int = field(default=250, metadata=env("AUTHZ_TIMEOUT_MS", int))
    # Envoy's answer when keymgr cannot be reached: deny (default, fail closed) or allow.
    authz_failure_mode_allow: bool = field(default=False, metadata=env("AUTHZ_FAILURE_MODE_ALLOW", _flag))
    # throttle/: where rate-limit counters live (memory: one replica only; redis: shared by replicas).
    ratelimit_store: str = field(
        default="memory", metadata=env("RATELIMIT_STORE", _choice("memory", "redis"))
    )
    redis_url: str = field(default="redis://127.0.0.1:6379/0", metadata=env("REDIS_URL"))
    # standalone: redis_url is the one Redis. cluster: a Redis Cluster, reached through redis_nodes
    # (host:port,...) or, when those are not set, the node redis_url names; its credentials and TLS
    # apply to every node.
    redis_mode: str = field(
        default=RedisMode.STANDALONE.value, metadata=env("REDIS_MODE", _choice(*RedisMode))
    )
    redis_nodes: tuple[HostPort, ...] = field(default=(), metadata=env("REDIS_NODES", _endpoints))
    # Each Redis call gives up after this long; the answer then follows ratelimit_failure_mode.
    redis_timeout_ms: int = field(default=50, metadata=env("REDIS_TIMEOUT_MS", int))
    # When counters cannot be reached: allow (fail open, default) or deny (fail closed).
    ratelimit_failure_mode: str = field(
        default=FailureMode.ALLOW.value, metadata=env("RATELIMIT_FAILURE_MODE", _choice(*FailureMode))
    )
    # Where Envoy reaches ShouldRateLimit; defaults to grpc_addr. Envoy's own deadline for the call.
    throttle_endpoints: tuple[HostPort, ...] = field(
        default=(), metadata=env("THROTTLE_ENDPOINTS", _endpoints)
    )
    ratelimit_timeout_ms: int = field(default=250, metadata=env("RATELIMIT_TIMEOUT_MS", int))
    # ratelimit: Envoy calls ShouldRateLimit after Check; authz (fused): Check applies the limits itself,
    # one gRPC call per request (keymgr and throttle then run in the same process).
    throttle_mode: ThrottleMode = field(
        default=ThrottleMode.RATELIMIT, metadata=env("THROTTLE_MODE", _throttle_mode)
    )
    # host:port serving this process's Prometheus metrics over HTTP (every component); empty = off.
    # TOLLWAY_THROTTLE_METRICS_ADDR: the earlier, throttle-only name, still accepted.
    metrics_addr: str = field(default="", metadata=env(("METRICS_ADDR", "THROTTLE_METRICS_ADDR")))
    # How often each replica polls the change log (push via LISTEN/NOTIFY on PostgreSQL), and how long
    # entries are kept: a replica down for longer loads in full when it comes back.
    change_poll_seconds: float = field(default=0.25, metadata=env("CHANGE_POLL_SECONDS", float))
    change_retention_seconds: float = field(default=3600.0, metadata=env("CHANGE_RETENTION_SECONDS", float))
    key_rotation_grace_seconds: int = field(
        default=24 * 3600, metadata=env("KEY_ROTATION_GRACE_SECONDS", int)
    )
    # usage/: local write-ahead log of received access-log entries (default <data_dir>/usage-wal; one
    # directory per usage replica), how often it is fsync'd and applied to the database, and the Envoy
    # admin endpoints whose access-log counters measure completeness (default envoy_admin_addr).
    usage_wal_dir: Path | None = field(default=None, metadata=env("USAGE_WAL_DIR", _optional_path))
    usage_wal_sync_ms: int = field(default=5, metadata=env("USAGE_WAL_SYNC_MS", int))
    usage_flush_ms: int = field(default=200, metadata=env("USAGE_FLUSH_MS", int))
    usage_envoy_admins: tuple[HostPort, ...] = field(
        default=(), metadata=env("USAGE_ENVOY_ADMINS", _endpoints)
    )
    usage_sample_seconds: float = field(default=10.0, metadata=env("USAGE_SAMPLE_SECONDS", float))
    # Envoy sends each access-log entry to this many usage endpoints at once (disjoint groups of
    # TOLLWAY_USAGE_ENDPOINTS), so a usage replica killed mid-stream loses no entry the others got;
    # usage counts each (node, request id) once. Capped at the number of usage endpoints.
    usage_copies: int = field(default=2, metadata=env("USAGE_COPIES", _positive_int))
    # portal/: web pages, consumer gRPC API, public URL (reset links), web TLS, CSRF secret, outbox.
    portal_addr: str = field(default="127.0.0.1:8088", metadata=env("PORTAL_ADDR"))
    portal_grpc_addr: str = field(default="127.0.0.1:18002", metadata=env("PORTAL_GRPC_ADDR"))
    portal_url: str = field(default="", metadata=env("PORTAL_URL"))
    portal_tls_cert_file: str = field(default="", metadata=env("PORTAL_TLS_CERT"))
    portal_tls_key_file: str = field(default="", metadata=env("PORTAL_TLS_KEY"))
    portal_secret: str = field(default="", metadata=env("PORTAL_SECRET"))
    portal_outbox_dir: Path | None = field(default=None, metadata=env("PORTAL_OUTBOX_DIR", _optional_path))
    # billing/ webhooks: the key of the stored signing secrets (default: generated into the data dir),
    # one POST's deadline, attempts before FAILED, the backoff's first/largest delay (s), the poll (s).
    webhook_secret_key: str = field(default="", repr=False, metadata=env("WEBHOOK_SECRET_KEY"))
    webhook_timeout: float = field(default=10.0, metadata=env("WEBHOOK_TIMEOUT", _positive_float))
    webhook_max_attempts: int = field(default=12, metadata=env("WEBHOOK_MAX_ATTEMPTS", _positive_int))
    webhook_retry_base: float = field(default=10.0, metadata=env("WEBHOOK_RETRY_BASE", _positive_float))
    webhook_retry_max: float = field(default=3600.0, metadata=env("WEBHOOK_RETRY_MAX", _positive_float))
    webhook_poll: float = field(default=1.0, metadata=env("WEBHOOK_POLL", _positive_float))
    event_retention_days: int = field(default=30, metadata=env("EVENT_RETENTION_DAYS", _positive_int))
    log_level: str = field(default="INFO", metadata=env("LOG_LEVEL"))
    # OS processes serving the Envoy-facing services (`--workers` of serve/up wins): worker k > 0 listens
    # on the gRPC port + k (the admin port skipped) and is one more endpoint in Envoy's clusters.
    workers: int = field(default=1, metadata=env("WORKERS", _positive_int))
    # Where `tollway up --demo` serves the demo API's upstream (its --demo-upstream option wins).
    demo_upstream_addr: str = field(default="127.0.0.1:8090", metadata=env("DEMO_UPSTREAM_ADDR"))

    @classmethod
    def read_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Every field from its TOLLWAY_* variable (the default when unset), nothing filled in or
        created: what a client (the CLI) needs, without the server's secrets on disk."""
        source = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for item in fields(cls):
            raw = item.metadata["env"].read(source)
            if raw is not None:
                values[item.name] = item.metadata["env"].parse(raw)
        return cls(**values)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """A server's settings: `read_env()`, then `resolved()`."""
        return cls.read_env(environ).resolved()

    @classmethod
    def env_name(cls, field_name: str) -> str:
        """The environment variable a field is read from (its current name, not older aliases)."""
        item = next(item for item in fields(cls) if item.name == field_name)
        env: EnvVar = item.metadata["env"]
        return ENV_PREFIX + env.names[0]

    def resolved(self) -> Settings:
        """Fills the embedded defaults: SQLite in the data dir, secrets persisted there, local endpoints."""
        database_url = self.database_url or f"sqlite:///{self.data_dir / 'tollway.db'}"
        # Every worker's Envoy-facing address, unless the endpoints are named (replicas elsewhere).
        grpc = tuple(split_addr(addr) for addr in self.worker_grpc_addrs)
        return replace(
            self,
            database_url=database_url,
            admin_token=self.admin_token or _read_or_create_secret(self.data_dir / "admin-token"),
            key_hash_secret=self.key_hash_secret or _read_or_create_secret(self.data_dir / "key-hash-secret"),
            keymgr_endpoints=self.keymgr_endpoints or grpc,
            usage_endpoints=self.usage_endpoints or grpc,
            usage_wal_dir=self.usage_wal_dir or self.data_dir / "usage-wal",
            usage_envoy_admins=self.usage_envoy_admins or (split_addr(self.envoy_admin_addr),),
            throttle_endpoints=self.throttle_endpoints or grpc,
            portal_url=self.portal_url
            or f"http{'s' if self.portal_tls_cert_file else ''}://{self.portal_addr}",
            portal_secret=self.portal_secret or _read_or_create_secret(self.data_dir / "portal-secret"),
            webhook_secret_key=self.webhook_secret_key
            or _read_or_create_secret(self.data_dir / "webhook-secret-key"),
            portal_outbox_dir=self.portal_outbox_dir or self.data_dir / "portal-outbox",
            envoy_nodes=self.envoy_nodes or (self.envoy_node_id,),
        )._with_envoy_auth()

    def _with_envoy_auth(self) -> Settings:
        """token mode: the token (given, from its file, or generated). mtls mode: the TLS files (all
        generated when none is given); refuses a partial set or an unusable token."""
        from tollway.errors import StartupRefused

        mode = EnvoyAuthMode(self.envoy_auth)
        if mode is EnvoyAuthMode.TOKEN:
            token = self.envoy_token
            if not token and self.envoy_token_file:
                token = Path(self.envoy_token_file).read_text().strip()
            token = token or _read_or_create_secret(self.data_dir / "envoy-token")
            problem = token_problem(token)
            if problem is not None:
                raise StartupRefused(f"{self.env_name('envoy_token')}: {problem}")
            return replace(self, envoy_token=token)
        if mode is not EnvoyAuthMode.MTLS:
            return self
        given = {name: getattr(self, name) for name in _ENVOY_TLS_FILES}
        if not any(given.values()):
            from tollway.envoy_pki import ensure_pki

            private_dir(self.data_dir)
            pki = ensure_pki(
                self.data_dir / "envoy-tls", self.envoy_tls_server_name, self.envoy_tls_client_name
            )
            return replace(
                self,
                envoy_tls_cert_file=str(pki.server_cert),
                envoy_tls_key_file=str(pki.server_key),
                envoy_tls_client_ca_file=str(pki.ca_cert),
                envoy_tls_ca_file=str(pki.ca_cert),
                envoy_tls_client_cert_file=str(pki.client_cert),
                envoy_tls_client_key_file=str(pki.client_key),
            )
        # One private CA usually signs both sides.
        given["envoy_tls_ca_file"] = given["envoy_tls_ca_file"] or self.envoy_tls_client_ca_file
        missing = [self.env_name(name) for name, value in given.items() if not value]
        if missing:
            raise StartupRefused(
                "TOLLWAY_ENVOY_AUTH=mtls with TLS files of your own needs all of them; missing "
                + ", ".join(missing)
                + " (or set none of them, and a private CA is generated into the data directory)"
            )
        return replace(self, envoy_tls_ca_file=given["envoy_tls_ca_file"])

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

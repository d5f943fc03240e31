"""Filling in a server's settings (`Settings.resolved()`): the embedded defaults (SQLite in the data dir,
local endpoints) and the secrets it keeps there (admin token, key-hash secret, portal secret, Envoy's
token or a private CA and certificates), created on first start with 0600 permissions. Only a server
resolves; the CLI reads settings without creating anything."""

from __future__ import annotations

import os
import secrets
from dataclasses import replace
from pathlib import Path

from tollway.envoy_auth import token_problem
from tollway.private_files import private_dir, private_file
from tollway.settings.declare import split_addr
from tollway.settings.model import Settings
from tollway.vocabulary import EnvoyAuthMode

# The mtls files (all given, or all generated).
ENVOY_TLS_FILES = (
    "envoy_tls_cert_file",
    "envoy_tls_key_file",
    "envoy_tls_client_ca_file",
    "envoy_tls_ca_file",
    "envoy_tls_client_cert_file",
    "envoy_tls_client_key_file",
)


def read_or_create_secret(path: Path) -> str:
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


def resolve(settings: Settings) -> Settings:
    """Fills the embedded defaults: SQLite in the data dir, secrets persisted there, local endpoints."""
    database_url = settings.database_url or f"sqlite:///{settings.data_dir / 'tollway.db'}"
    # Every worker's Envoy-facing address, unless the endpoints are named (replicas elsewhere).
    grpc = tuple(split_addr(addr) for addr in settings.worker_grpc_addrs)
    settings = replace(
        settings,
        database_url=database_url,
        admin_token=settings.admin_token or read_or_create_secret(settings.data_dir / "admin-token"),
        key_hash_secret=settings.key_hash_secret
        or read_or_create_secret(settings.data_dir / "key-hash-secret"),
        keymgr_endpoints=settings.keymgr_endpoints or grpc,
        usage_endpoints=settings.usage_endpoints or grpc,
        usage_wal_dir=settings.usage_wal_dir or settings.data_dir / "usage-wal",
        usage_envoy_admins=settings.usage_envoy_admins or (split_addr(settings.envoy_admin_addr),),
        throttle_endpoints=settings.throttle_endpoints or grpc,
        portal_url=settings.portal_url
        or f"http{'s' if settings.portal_tls_cert_file else ''}://{settings.portal_addr}",
        portal_secret=settings.portal_secret or read_or_create_secret(settings.data_dir / "portal-secret"),
        webhook_secret_key=settings.webhook_secret_key
        or read_or_create_secret(settings.data_dir / "webhook-secret-key"),
        portal_outbox_dir=settings.portal_outbox_dir or settings.data_dir / "portal-outbox",
        envoy_nodes=settings.envoy_nodes or (settings.envoy_node_id,),
    )
    return _with_envoy_auth(settings)


def _with_envoy_auth(settings: Settings) -> Settings:
    """token mode: the token (given, from its file, or generated). mtls mode: the TLS files (all
    generated when none is given); refuses a partial set or an unusable token."""
    from tollway.errors import StartupRefused

    mode = EnvoyAuthMode(settings.envoy_auth)
    if mode is EnvoyAuthMode.TOKEN:
        token = settings.envoy_token
        if not token and settings.envoy_token_file:
            token = Path(settings.envoy_token_file).read_text().strip()
        token = token or read_or_create_secret(settings.data_dir / "envoy-token")
        problem = token_problem(token)
        if problem is not None:
            raise StartupRefused(f"{Settings.env_name('envoy_token')}: {problem}")
        return replace(settings, envoy_token=token)
    if mode is not EnvoyAuthMode.MTLS:
        return settings
    given = {name: getattr(settings, name) for name in ENVOY_TLS_FILES}
    if not any(given.values()):
        from tollway.envoy_pki import ensure_pki

        private_dir(settings.data_dir)
        pki = ensure_pki(
            settings.data_dir / "envoy-tls", settings.envoy_tls_server_name, settings.envoy_tls_client_name
        )
        return replace(
            settings,
            envoy_tls_cert_file=str(pki.server_cert),
            envoy_tls_key_file=str(pki.server_key),
            envoy_tls_client_ca_file=str(pki.ca_cert),
            envoy_tls_ca_file=str(pki.ca_cert),
            envoy_tls_client_cert_file=str(pki.client_cert),
            envoy_tls_client_key_file=str(pki.client_key),
        )
    # One private CA usually signs both sides.
    given["envoy_tls_ca_file"] = given["envoy_tls_ca_file"] or settings.envoy_tls_client_ca_file
    missing = [Settings.env_name(name) for name, value in given.items() if not value]
    if missing:
        raise StartupRefused(
            "TOLLWAY_ENVOY_AUTH=mtls with TLS files of your own needs all of them; missing "
            + ", ".join(missing)
            + " (or set none of them, and a private CA is generated into the data directory)"
        )
    return replace(settings, envoy_tls_ca_file=given["envoy_tls_ca_file"])

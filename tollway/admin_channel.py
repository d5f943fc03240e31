"""The client side of the admin port, shared by every CLI command: plaintext by default, TLS when
TOLLWAY_ADMIN_TLS_CA names the CA that signed the server's certificate, mTLS when a client certificate
and key are given too (TOLLWAY_ADMIN_TLS_CLIENT_CERT / TOLLWAY_ADMIN_TLS_CLIENT_KEY)."""

from __future__ import annotations

import os
from pathlib import Path

import grpc


def admin_channel(addr: str, environ: dict[str, str] | None = None) -> grpc.Channel:
    env = os.environ if environ is None else environ
    ca = env.get("TOLLWAY_ADMIN_TLS_CA", "")
    if not ca:
        return grpc.insecure_channel(addr)
    cert, key = env.get("TOLLWAY_ADMIN_TLS_CLIENT_CERT", ""), env.get("TOLLWAY_ADMIN_TLS_CLIENT_KEY", "")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(ca).read_bytes(),
        private_key=Path(key).read_bytes() if key else None,
        certificate_chain=Path(cert).read_bytes() if cert else None,
    )
    return grpc.secure_channel(addr, credentials)

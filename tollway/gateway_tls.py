"""The gateway's HTTPS certificate and key (TOLLWAY_GATEWAY_TLS_CERT / _KEY), read and checked before
Envoy ever sees them.

A pair is served only when both files parse as PEM, the key is unencrypted and belongs to the first
certificate of the chain, and that certificate has not expired: otherwise startup is refused with a
message saying which file is wrong and why (never the key's content), and a rotation in progress keeps
the pair already served. The same check runs on every change of the files (xds/gateway_tls.py), so a
certificate written before its key, for a moment a mismatched pair, is never pushed to Envoy.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization


class GatewayTlsError(ValueError):
    """A certificate or key that cannot be served; the message names the file and the fault."""


@dataclass(frozen=True)
class TlsPair:
    """A checked certificate chain and its private key, as PEM bytes."""

    cert_pem: bytes
    key_pem: bytes
    serial: int
    subject: str
    not_after: dt.datetime

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the pair's bytes, short: what logs show of a pair (the key's content never)."""
        return hashlib.sha256(self.cert_pem + b"\0" + self.key_pem).hexdigest()[:16]


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise GatewayTlsError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise GatewayTlsError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None


def load_pair(cert_file: str | Path, key_file: str | Path, now: dt.datetime | None = None) -> TlsPair:
    """The pair in these PEM files, checked; GatewayTlsError saying what is wrong otherwise."""
    cert_path, key_path = Path(cert_file), Path(key_file)
    cert_pem = _read(cert_path, "the gateway's TLS certificate")
    key_pem = _read(key_path, "the gateway's TLS key")
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise GatewayTlsError(
            f"the gateway's TLS certificate {cert_path} holds no PEM certificate (BEGIN CERTIFICATE)"
        ) from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise GatewayTlsError(
            f"the gateway's TLS key {key_path} is encrypted; Envoy needs it without a passphrase"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise GatewayTlsError(
            f"the gateway's TLS key {key_path} holds no usable PEM private key ({type(exc).__name__})"
        ) from None
    leaf = chain[0]
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, spki) != leaf.public_key().public_bytes(
        serialization.Encoding.DER, spki
    ):
        raise GatewayTlsError(
            f"the gateway's TLS key {key_path} does not belong to the certificate in {cert_path} "
            f"({leaf.subject.rfc4514_string()})"
        )
    moment = now or dt.datetime.now(dt.UTC)
    if leaf.not_valid_after_utc <= moment:
        raise GatewayTlsError(
            f"the gateway's TLS certificate {cert_path} ({leaf.subject.rfc4514_string()}) expired on "
            f"{leaf.not_valid_after_utc.isoformat()}"
        )
    return TlsPair(
        cert_pem=cert_pem,
        key_pem=key_pem,
        serial=leaf.serial_number,
        subject=leaf.subject.rfc4514_string(),
        not_after=leaf.not_valid_after_utc,
    )

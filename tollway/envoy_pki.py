"""The embedded default's private PKI for the link between Envoy and Tollway: one CA, a server
certificate for Tollway's Envoy-facing port and a client certificate for Envoy, generated into the data
directory (every file 0600) the first time a process needs them, and reused after.

The CA signs only these two certificates, each restricted to its role by extended key usage (a server
certificate cannot be presented as a client's), and nothing else trusts it: it exists so that the port
Envoy calls accepts Envoy alone. Keys are ECDSA P-256; leaves live `LEAF_DAYS` and are issued again
(CA included) when a process starts with less than `RENEW_DAYS` left, or when the names asked for are
not the ones in the files. An operator with a PKI of their own sets the TOLLWAY_ENVOY_TLS_* paths
instead (tollway/settings/), and nothing is generated.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tollway.private_files import private_dir, write_private

CA_DAYS = 3650
LEAF_DAYS = 825
RENEW_DAYS = 30
# Names besides the configured server name, so that local tools (grpcurl, tests) can verify the
# certificate when they connect by address.
LOCAL_SERVER_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class PkiFiles:
    """Where the generated files are (PEM): Tollway serves with server_*, trusts client certificates
    the CA signed; Envoy presents client_* and trusts server certificates the CA signed."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def under(cls, directory: Path) -> PkiFiles:
        return cls(
            ca_cert=directory / "ca.pem",
            ca_key=directory / "ca.key",
            server_cert=directory / "server.pem",
            server_key=directory / "server.key",
            client_cert=directory / "envoy.pem",
            client_key=directory / "envoy.key",
        )

    def all(self) -> tuple[Path, ...]:
        return tuple(getattr(self, item.name) for item in fields(self))


def ensure_pki(directory: Path, server_name: str, client_name: str) -> PkiFiles:
    """The PKI under `directory`: the files there when they are complete, current and issued for these
    names; otherwise a new CA and certificates (written 0600, the directory 0700)."""
    files = PkiFiles.under(directory)
    private_dir(directory)
    if not _usable(files, server_name, client_name):
        _issue(files, server_name, client_name)
    return files


def issue_client_certificate(
    files: PkiFiles, name: str, cert_path: Path, key_path: Path, days: int = LEAF_DAYS
) -> None:
    """A further client certificate from the CA in `files` (e.g. for a second Envoy, or a test that
    presents a certificate the CA signed under another name)."""
    ca_key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{files.ca_key} is not the ECDSA key this module generates")
    ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    key, cert = _leaf(ca_cert, ca_key, name, [name], client=True, days=days)
    write_private(key_path, key)
    write_private(cert_path, cert)


def _usable(files: PkiFiles, server_name: str, client_name: str) -> bool:
    if not all(path.is_file() for path in files.all()):
        return False
    try:
        server = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
        client = x509.load_pem_x509_certificate(files.client_cert.read_bytes())
        ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    except ValueError:
        return False
    renew_by = dt.datetime.now(dt.UTC) + dt.timedelta(days=RENEW_DAYS)
    if min(c.not_valid_after_utc for c in (server, client, ca)) < renew_by:
        return False
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    client_names = [str(a.value) for a in client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return server_name in _san_strings(san) and client_names == [client_name]


def _san_strings(san: x509.SubjectAlternativeName) -> set[str]:
    return {str(name) for name in san.get_values_for_type(x509.DNSName)} | {
        str(address) for address in san.get_values_for_type(x509.IPAddress)
    }


def _issue(files: PkiFiles, server_name: str, client_name: str) -> None:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tollway Envoy link CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_names = [server_name, *(name for name in LOCAL_SERVER_NAMES if name != server_name)]
    server = _leaf(ca_cert, ca_key, server_name, server_names, client=False)
    client = _leaf(ca_cert, ca_key, client_name, [client_name], client=True)
    ca_key_pem = ca_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    written = (
        (files.ca_key, ca_key_pem),
        (files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM).decode()),
        (files.server_key, server[0]),
        (files.server_cert, server[1]),
        (files.client_key, client[0]),
        (files.client_cert, client[1]),
    )
    for path, text in written:
        # Whole files only: a process reading them meanwhile sees the old PEM or the new one.
        partial = path.with_name(path.name + ".new")
        write_private(partial, text)
        os.replace(partial, path)


def _leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    names: Sequence[str],
    *,
    client: bool,
    days: int = LEAF_DAYS,
) -> tuple[str, str]:
    """(key PEM, certificate PEM) of a certificate for `names`, for a client or a server only."""
    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode()

"""HTTPS at the gateway without Envoy: the certificate check that refuses startup and guards rotation,
the file watch, and the resources (an SDS secret, the listener's TLS context, the redirect listener)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from tests.gateway_certs import CertAuthority, encrypted_key_pem, write_pair
from tollway.errors import StartupRefused
from tollway.gateway_tls import GatewayTlsError, load_pair
from tollway.settings import Settings
from xds.component import COMPONENT
from xds.gateway_tls import (
    ALPN_PROTOCOLS,
    GATEWAY_SECRET_NAME,
    REDIRECT_LISTENER_NAME,
    SECRET_TYPE,
    CertificateWatch,
)
from xds.resources import LISTENER_NAME, LISTENER_TYPE, TYPE_ORDER, GatewayOptions, build_resources

CA = CertAuthority()


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    write_pair(CA.issue("gateway-1"), cert, key)
    return cert, key


def test_a_good_pair_loads(files: tuple[Path, Path]) -> None:
    pair = load_pair(*files)
    assert pair.subject == "CN=gateway-1"
    assert pair.key_pem == files[1].read_bytes()


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("missing cert", "certificate .* does not exist"),
        ("missing key", "key .* does not exist"),
        ("garbage cert", "holds no PEM certificate"),
        ("garbage key", "holds no usable PEM private key"),
        ("encrypted key", "is encrypted"),
        ("other key", "does not belong to the certificate"),
        ("expired", "expired on"),
    ],
)
def test_a_bad_pair_says_what_is_wrong(files: tuple[Path, Path], fault: str, message: str) -> None:
    cert, key = files
    if fault == "missing cert":
        cert.unlink()
    elif fault == "missing key":
        key.unlink()
    elif fault == "garbage cert":
        cert.write_text("not a certificate")
    elif fault == "garbage key":
        key.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    elif fault == "encrypted key":
        key.write_bytes(encrypted_key_pem())
    elif fault == "other key":
        key.write_bytes(CA.issue("someone-else").key_pem)
    elif fault == "expired":
        write_pair(CA.issue("old", expired=True), cert, key)
    secret = key.read_bytes() if key.exists() else b""
    with pytest.raises(GatewayTlsError, match=message) as raised:
        load_pair(cert, key)
    # The message names the file, never the key's content.
    assert str(cert) in str(raised.value) or str(key) in str(raised.value)
    assert not secret or secret.decode(errors="replace").splitlines()[1] not in str(raised.value)


def _settings(tmp_path: Path, **fields: object) -> Settings:
    return Settings(data_dir=tmp_path, **fields)  # type: ignore[arg-type]


def test_startup_refuses_a_bad_or_partial_setup(tmp_path: Path, files: tuple[Path, Path]) -> None:
    cert, key = files
    COMPONENT.refuse_unsafe(
        _settings(tmp_path, gateway_tls_cert_file=str(cert), gateway_tls_key_file=str(key))
    )
    COMPONENT.refuse_unsafe(_settings(tmp_path))  # plain HTTP, the default
    with pytest.raises(StartupRefused, match="TOLLWAY_GATEWAY_TLS_KEY is not set"):
        COMPONENT.refuse_unsafe(_settings(tmp_path, gateway_tls_cert_file=str(cert)))
    with pytest.raises(StartupRefused, match="TOLLWAY_GATEWAY_HTTP_REDIRECT_ADDR redirects to HTTPS"):
        COMPONENT.refuse_unsafe(_settings(tmp_path, gateway_http_redirect_addr="127.0.0.1:8081"))
    key.write_bytes(CA.issue("mismatch").key_pem)
    with pytest.raises(StartupRefused, match="does not belong"):
        COMPONENT.refuse_unsafe(
            _settings(tmp_path, gateway_tls_cert_file=str(cert), gateway_tls_key_file=str(key))
        )


def test_the_watch_pushes_each_new_checked_pair_and_keeps_the_old_on_a_bad_one(
    files: tuple[Path, Path],
) -> None:
    cert, key = files
    pushed: list[str] = []
    watch = CertificateWatch(str(cert), str(key), lambda pair: pushed.append(pair.subject))
    assert watch.check() is False  # nothing changed
    second = CA.issue("gateway-2")
    # The certificate written over in place before its key: for a moment a mismatched pair.
    cert.write_bytes(second.cert_pem)
    assert watch.check() is False
    assert watch.rejected == 1 and watch.pair.subject == "CN=gateway-1"
    key.write_bytes(second.key_pem)
    assert watch.check() is True
    assert pushed == ["CN=gateway-2"] and watch.pair.serial == second.serial
    # Replaced by rename (how Kubernetes and certbot swap files) is seen too.
    third = CA.issue("gateway-3")
    staged_cert, staged_key = cert.with_suffix(".new"), key.with_suffix(".new")
    write_pair(third, staged_cert, staged_key)
    os.replace(staged_key, key)
    os.replace(staged_cert, cert)
    assert watch.check() is True
    assert pushed == ["CN=gateway-2", "CN=gateway-3"]
    # The same bytes written again push nothing.
    cert.write_bytes(third.cert_pem)
    assert watch.check() is False and len(pushed) == 2


def _options(**fields: object) -> GatewayOptions:
    return GatewayOptions(
        keymgr_endpoints=(("127.0.0.1", 18000),), usage_endpoints=(("127.0.0.1", 18000),), **fields
    )  # type: ignore[arg-type]


def test_https_resources(files: tuple[Path, Path]) -> None:
    pair = load_pair(*files)
    resources = build_resources(
        [], _options(tls=True, listener_port=8443, http_redirect=("0.0.0.0", 8080)), pair
    )
    assert TYPE_ORDER.index(SECRET_TYPE) < TYPE_ORDER.index(LISTENER_TYPE)  # certificate before its user
    secret = resources[SECRET_TYPE][GATEWAY_SECRET_NAME]
    assert secret.tls_certificate.certificate_chain.inline_bytes == pair.cert_pem  # type: ignore[attr-defined]
    listener = resources[LISTENER_TYPE][LISTENER_NAME]
    context = tls_pb2.DownstreamTlsContext()
    assert listener.filter_chains[0].transport_socket.typed_config.Unpack(context)  # type: ignore[attr-defined]
    assert tuple(context.common_tls_context.alpn_protocols) == ALPN_PROTOCOLS
    assert context.common_tls_context.tls_certificate_sds_secret_configs[0].name == GATEWAY_SECRET_NAME
    assert context.common_tls_context.tls_certificate_sds_secret_configs[0].sds_config.HasField("ads")
    redirect = resources[LISTENER_TYPE][REDIRECT_LISTENER_NAME]
    assert redirect.address.socket_address.port_value == 8080  # type: ignore[attr-defined]


def test_plain_http_has_no_secret_and_no_tls() -> None:
    resources = build_resources([], _options())
    assert SECRET_TYPE not in resources
    assert not resources[LISTENER_TYPE][LISTENER_NAME].filter_chains[0].HasField("transport_socket")  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="needs the listener to serve HTTPS"):
        _options(http_redirect=("0.0.0.0", 8080))
    with pytest.raises(ValueError, match="needs its certificate"):
        build_resources([], _options(tls=True))

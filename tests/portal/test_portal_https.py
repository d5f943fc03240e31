"""The web portal over HTTPS (TOLLWAY_PORTAL_TLS_CERT/KEY): its cookies are Secure, the session
cookie carries the __Host- prefix (no Domain, Path=/), and reset links use the https URL."""

from __future__ import annotations

import re
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import free_port
from tollway.app.runner import TollwayProcess
from tollway.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
async def https_portal(tmp_path: Path) -> AsyncIterator[Settings]:
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", "portal.key", "-out", "portal.pem", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        cwd=tmp_path, check=True, capture_output=True,
    )  # fmt: skip
    settings = Settings(
        data_dir=tmp_path / "data",
        components=("admin", "keymgr", "billing", "portal"),
        admin_addr=f"127.0.0.1:{free_port()}",
        portal_addr=f"127.0.0.1:{free_port()}",
        portal_grpc_addr=f"127.0.0.1:{free_port()}",
        portal_tls_cert_file=str(tmp_path / "portal.pem"),
        portal_tls_key_file=str(tmp_path / "portal.key"),
    ).resolved()
    process = TollwayProcess(settings)
    await process.start()
    try:
        yield settings
    finally:
        await process.stop()


async def test_cookies_are_secure_over_https(https_portal: Settings, tmp_path: Path) -> None:
    assert https_portal.portal_url.startswith("https://")
    async with httpx.AsyncClient(
        base_url=https_portal.portal_url,
        verify=ssl.create_default_context(cafile=str(tmp_path / "portal.pem")),
    ) as client:
        form = await client.get("/sign-up")
        anonymous = form.headers["set-cookie"]
        assert anonymous.startswith("tollway_csrf=") and "Secure" in anonymous and "HttpOnly" in anonymous
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
        signed_up = await client.post(
            "/sign-up",
            data={"csrf_token": token, "email": "tls@example.com", "password": "tls test password"},
        )
        assert signed_up.status_code == 303
        cookie = signed_up.headers["set-cookie"]
        assert cookie.startswith("__Host-tollway_session=")
        attributes = [part.strip().lower() for part in cookie.split(";")[1:]]
        assert {"secure", "httponly", "samesite=lax", "path=/"} <= set(attributes)
        assert not any(a.startswith("domain") for a in attributes)
        assert (await client.get("/apps")).status_code == 200
    async with httpx.AsyncClient(base_url=https_portal.portal_url.replace("https", "http")) as plain:
        with pytest.raises(httpx.HTTPError):
            await plain.get("/sign-in")

"""The data directory after a run with the embedded defaults (SQLite, generated secrets, the usage WAL,
the gateway's Envoy from the launcher, the Envoy-facing link's generated CA and certificates): every
file 0600, every directory 0700, whatever the umask of the shell that started Tollway."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import free_port
from tollway.app.launcher import gateway_envoy
from tollway.app.runner import TollwayProcess
from tollway.settings import Settings


@pytest.fixture
def usual_umask() -> Iterator[None]:
    previous = os.umask(0o022)  # what a login shell usually has: files 0644, directories 0755
    try:
        yield
    finally:
        os.umask(previous)


def modes(root: Path) -> dict[str, str]:
    found = {".": oct(stat.S_IMODE(root.stat().st_mode))}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = oct(stat.S_IMODE(path.lstat().st_mode))
    return found


def test_everything_under_the_data_dir_is_private(tmp_path: Path, usual_umask: None) -> None:
    data_dir = tmp_path / "data"
    settings = Settings(
        data_dir=data_dir,
        grpc_addr=f"127.0.0.1:{free_port()}",
        admin_addr=f"127.0.0.1:{free_port()}",
        gateway_addr=f"127.0.0.1:{free_port()}",
        envoy_admin_addr=f"127.0.0.1:{free_port()}",
        change_poll_seconds=0.1,
    ).resolved()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="tollway-services", daemon=True)
    thread.start()
    process = TollwayProcess(settings)
    asyncio.run_coroutine_threadsafe(process.start(), loop).result(30)
    envoy = gateway_envoy(settings)
    try:
        envoy.start()
        envoy.wait_ready(30)
        # One request through the gateway: an access-log entry for usage, a line in Envoy's logs.
        with contextlib.suppress(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://{settings.gateway_addr}/nothing-here", timeout=5).close()
    finally:
        envoy.stop()
        asyncio.run_coroutine_threadsafe(process.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)

    found = modes(data_dir)
    expected_files = {
        "admin-token",
        "key-hash-secret",
        "tollway.db",
        "envoy/envoy-bootstrap.json",
        "envoy/envoy.log",
        # The Envoy-facing link's private CA and certificates (mTLS, the default).
        *(
            f"envoy-tls/{name}"
            for name in ("ca.pem", "ca.key", "server.pem", "server.key", "envoy.pem", "envoy.key")
        ),
    }
    assert expected_files <= found.keys(), sorted(found)
    assert "usage-wal" in found and "envoy" in found
    wrong = {
        name: mode
        for name, mode in found.items()
        if mode != (oct(0o700) if (data_dir / name).is_dir() else oct(0o600))
    }
    assert not wrong, wrong

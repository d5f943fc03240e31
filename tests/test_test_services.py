"""`make test` runs the suite through scripts/test-services: with no PostgreSQL or Redis answering at the
test URLs it starts private ones on free ports, exports their URLs to the suite and stops them after;
servers that answer are used as they are."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "test-services"
# Connects to both servers the way the suite does, and prints the URLs it was given.
PROBE = """
import asyncio, os, asyncpg, redis
async def main():
    conn = await asyncpg.connect(os.environ["TOLLWAY_TEST_POSTGRES_URL"])
    assert await conn.fetchval("select current_database()") == "test"
    await conn.close()
asyncio.run(main())
assert redis.Redis.from_url(os.environ["TOLLWAY_TEST_REDIS_URL"]).ping()
print(os.environ["TOLLWAY_TEST_POSTGRES_URL"])
print(os.environ["TOLLWAY_TEST_REDIS_URL"])
raise SystemExit(7)
"""


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def accepts(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 0), timeout=1):
            return True
    except OSError:
        return False


def run_script(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--", sys.executable, "-c", PROBE],
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_unreachable_servers_are_replaced_by_private_ones_that_are_stopped_after() -> None:
    environment = {
        **os.environ,
        "TOLLWAY_TEST_POSTGRES_URL": f"postgresql://postgres@127.0.0.1:{closed_port()}/test",
        "TOLLWAY_TEST_REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0",
    }
    result = run_script(environment)
    assert result.returncode == 7, result.stderr  # the command's own exit code
    postgres_url, redis_url = result.stdout.split()
    assert postgres_url != environment["TOLLWAY_TEST_POSTGRES_URL"]
    assert redis_url != environment["TOLLWAY_TEST_REDIS_URL"]
    assert "started a private PostgreSQL" in result.stderr and "started a private Redis" in result.stderr
    assert not accepts(postgres_url) and not accepts(redis_url)


def test_servers_that_answer_are_used_as_they_are() -> None:
    result = run_script(dict(os.environ))
    assert result.returncode == 7, result.stderr
    assert "started" not in result.stderr

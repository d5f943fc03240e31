"""Worker settings (pure) and the refusal of several workers on the memory store, through the real
`tollway serve` command (it refuses before it binds or opens anything)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from throttle.replicas import UnsafeSetup
from tollway.settings import Settings


def _settings(**fields: object) -> Settings:
    base: dict[str, object] = {
        "data_dir": Path("/nonexistent"),
        "database_url": "sqlite:///x.db",
        "admin_token": "t",
        "key_hash_secret": "s",
        "grpc_addr": "127.0.0.1:18000",
        "admin_addr": "127.0.0.1:18001",
    }
    return Settings(**{**base, **fields}).resolved()  # type: ignore[arg-type]


def test_workers_take_the_ports_after_the_grpc_port_skipping_the_admin_port() -> None:
    settings = _settings(workers=3)
    assert settings.worker_grpc_addrs == ("127.0.0.1:18000", "127.0.0.1:18002", "127.0.0.1:18003")
    expected = (("127.0.0.1", 18000), ("127.0.0.1", 18002), ("127.0.0.1", 18003))
    assert settings.keymgr_endpoints == settings.throttle_endpoints == settings.usage_endpoints == expected


def test_named_endpoints_win_over_the_workers() -> None:
    settings = _settings(workers=2, keymgr_endpoints=(("10.0.0.1", 9000),))
    assert settings.keymgr_endpoints == (("10.0.0.1", 9000),)
    assert settings.usage_endpoints == (("127.0.0.1", 18000), ("127.0.0.1", 18002))


def test_a_worker_runs_the_hot_path_with_its_own_wal_and_port() -> None:
    settings = _settings(workers=2, metrics_addr="127.0.0.1:9100")
    assert settings.for_worker(0) == settings
    worker = settings.for_worker(1)
    assert worker.grpc_addr == "127.0.0.1:18002"
    assert worker.components == ("keymgr", "throttle", "usage")
    assert worker.usage.wal_dir == Path("/nonexistent/usage-wal/worker-1")
    assert worker.usage.envoy_admins == ()  # worker 0 samples Envoy's counters
    assert worker.metrics_addr == "127.0.0.1:9101"
    # Envoy's clusters are the same whichever worker builds them.
    assert worker.gateway == settings.gateway
    with pytest.raises(ValueError):
        settings.for_worker(2)


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Settings.read_env({"TOLLWAY_WORKERS": "0"})
    assert Settings.read_env({"TOLLWAY_WORKERS": "4"}).workers == 4


def test_several_workers_on_the_memory_store_are_refused(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "TOLLWAY_DATA_DIR": str(tmp_path),
        "TOLLWAY_RATELIMIT_STORE": "memory",
        "TOLLWAY_GRPC_ADDR": "127.0.0.1:1",
        "TOLLWAY_ADMIN_ADDR": "127.0.0.1:2",
    }
    tollway = str(Path(sys.executable).parent / "tollway")
    result = subprocess.run(
        [tollway, "serve", "--workers", "2"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert "TOLLWAY_RATELIMIT_STORE=redis" in result.stderr
    assert "each worker would keep its own rate-limit counters" in result.stderr
    assert "Traceback" not in result.stderr
    # Refused before anything started: no database file.
    assert not (tmp_path / "tollway.db").exists()


def test_the_refusal_comes_before_any_worker_starts(tmp_path: Path) -> None:
    from tollway.app.workers import WorkerGroup

    settings = _settings(workers=2, data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'db'}")
    with pytest.raises(UnsafeSetup, match="TOLLWAY_WORKERS=2 with TOLLWAY_RATELIMIT_STORE=memory"):
        WorkerGroup(settings)
    # A process running no throttle has no counters to get wrong.
    WorkerGroup(_settings(workers=2, components=("usage",), data_dir=tmp_path))
    # Redis keeps one set of counters for every worker.
    WorkerGroup(_settings(workers=2, ratelimit_store="redis", data_dir=tmp_path))

"""usage/'s settings from TOLLWAY_* variables."""

from __future__ import annotations

from pathlib import Path

from tollway.settings import Settings


def test_usage_settings_from_env(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "TOLLWAY_DATA_DIR": str(tmp_path),
            "TOLLWAY_USAGE_WAL_DIR": str(tmp_path / "wal-here"),
            "TOLLWAY_USAGE_WAL_SYNC_MS": "2",
            "TOLLWAY_USAGE_FLUSH_MS": "50",
            "TOLLWAY_USAGE_ENVOY_ADMINS": "10.0.0.1:9901, 10.0.0.2:9901",
            "TOLLWAY_USAGE_SAMPLE_SECONDS": "3",
        }
    )
    assert settings.usage_wal_dir == tmp_path / "wal-here"
    assert (settings.usage_wal_sync_ms, settings.usage_flush_ms, settings.usage_sample_seconds) == (
        2,
        50,
        3.0,
    )
    assert settings.usage_envoy_admins == (("10.0.0.1", 9901), ("10.0.0.2", 9901))


def test_usage_defaults_live_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"TOLLWAY_DATA_DIR": str(tmp_path), "TOLLWAY_ENVOY_ADMIN_ADDR": "127.0.0.1:9999"}
    )
    assert settings.usage_wal_dir == tmp_path / "usage-wal"
    assert settings.usage_envoy_admins == (("127.0.0.1", 9999),)

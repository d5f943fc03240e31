"""The config file (tollway.toml) sets the same settings as the environment variables: every field,
through the same parser, the variable winning over the file; a bad key or value is refused with the
file, the key and the reason; `tollway config show|check` report values and sources without printing
a secret."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tollway.app.cli import app
from tollway.settings import Settings
from tollway.settings.loader import CONFIG_ENV, ConfigError, load

# A value other than the default for every setting whose parser is particular; the rest are derived
# from their defaults' type below. A new setting needs nothing here unless its parser is particular.
PARTICULAR = {
    "components": "keymgr,usage",
    "envoy_auth": "token",
    "envoy_nodes": "edge-1,edge-2",
    "keymgr_endpoints": "10.0.0.1:18000,10.0.0.2:18000",
    "usage_endpoints": "10.0.0.3:18000",
    "ratelimit_store": "redis",
    "redis_mode": "cluster",
    "redis_nodes": "10.0.0.4:7000,10.0.0.5:7000",
    "ratelimit_failure_mode": "deny",
    "throttle_endpoints": "10.0.0.6:18000",
    "throttle_mode": "authz",
    "usage_envoy_admins": "10.0.0.7:9901",
    "log_level": "debug",
    "log_levels": "throttle=debug,usage=warning",
    "log_format": "json",
    "authz_failure_mode_allow": "true",
}


def sample(name: str, default: Any) -> str:
    if name in PARTICULAR:
        return PARTICULAR[name]
    if isinstance(default, bool):
        return "true"
    if isinstance(default, int):
        return str(default + 7)
    if isinstance(default, float):
        return str(default * 2)
    if isinstance(default, str) and ":" in default and "//" not in default:
        return "10.9.8.7:4321"  # an address
    if isinstance(default, str) and default.startswith("redis://"):
        return "redis://10.9.8.7:6380/2"
    return f"/srv/tollway/{name}" if name.endswith(("_dir", "_file")) or default is None else f"value-{name}"


SAMPLES = {item.name: sample(item.name, item.default) for item in fields(Settings)}
ENVIRON = {Settings.env_name(name): text for name, text in SAMPLES.items()}


def toml_value(text: str) -> str:
    if text in ("true", "false"):
        return text
    try:
        float(text)
        return text
    except ValueError:
        return json.dumps(text)


def sectioned(samples: dict[str, str]) -> str:
    """The samples as a TOML file with tables ([redis] url = ...)."""
    top, tables = [], {}
    for name, text in samples.items():
        key = Settings.declaration(name).file_key
        table, _, sub = key.partition(".")
        if sub:
            tables.setdefault(table, []).append(f"{sub} = {toml_value(text)}")
        else:
            top.append(f"{key} = {toml_value(text)}")
    return "\n".join([*top, *(f"[{t}]\n" + "\n".join(lines) for t, lines in tables.items())]) + "\n"


def flat(samples: dict[str, str]) -> str:
    return "".join(
        f"{Settings.declaration(n).file_key.replace('.', '_')} = {toml_value(t)}\n"
        for n, t in samples.items()
    )


def test_every_setting_has_a_sample_that_is_not_its_default() -> None:
    from_env = load(ENVIRON).settings
    same = [item.name for item in fields(Settings) if getattr(from_env, item.name) == item.default]
    assert not same, f"these samples equal the default, so the test would not see them: {same}"


@pytest.mark.parametrize("layout", [sectioned, flat], ids=["tables", "flat"])
def test_a_file_sets_the_same_settings_as_the_environment(tmp_path: Path, layout: Any) -> None:
    path = tmp_path / "tollway.toml"
    path.write_text(layout(SAMPLES))
    from_file = load({CONFIG_ENV: str(path)})
    assert from_file.settings == load(ENVIRON).settings
    assert {source.kind for source in from_file.sources.values()} == {"file"}


def test_lists_in_the_file_are_the_comma_separated_variables(tmp_path: Path) -> None:
    path = tmp_path / "tollway.toml"
    path.write_text('components = ["keymgr", "usage"]\nworkers = 3\n[redis]\nnodes = ["h1:1", "h2:2"]\n')
    settings = load({CONFIG_ENV: str(path)}).settings
    assert settings.components == ("keymgr", "usage")
    assert settings.workers == 3 and settings.redis_nodes == (("h1", 1), ("h2", 2))


def test_the_environment_wins_and_an_empty_variable_counts_as_unset(tmp_path: Path) -> None:
    path = tmp_path / "tollway.toml"
    path.write_text('[redis]\nurl = "redis://file:1/0"\ntimeout_ms = 80\n[admin]\naddr = "10.0.0.1:1"\n')
    loaded = load({CONFIG_ENV: str(path), "TOLLWAY_REDIS_URL": "redis://env:1/0", "TOLLWAY_ADMIN_ADDR": ""})
    assert loaded.settings.redis_url == "redis://env:1/0"
    assert loaded.settings.redis_timeout_ms == 80
    assert loaded.settings.admin_addr == "10.0.0.1:1"
    assert loaded.sources["redis_url"].kind == "env"
    assert loaded.sources["redis_timeout_ms"].where == f"{path}: redis.timeout_ms"
    assert loaded.sources["workers"].kind == "default"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[redis]\nurll = "x"\n', "unknown key 'redis.urll'; did you mean 'redis.url'?"),
        ("wrokers = 2\n", "unknown key 'wrokers'; did you mean 'workers'?"),
        ("workers = 0\n", "workers: must be a positive number, got '0'"),
        ('[ratelimit]\nstore = "memcached"\n', "ratelimit.store: 'memcached' must be one of memory, redis"),
        ("[redis]\ntimeout_ms = 1979-05-27\n", "redis.timeout_ms: must be a string, number, boolean or list"),
        ("[redis.extra]\nx = 1\n", "one table deep"),
        ('redis_url = "b"\n[redis]\nurl = "a"\n', "set twice"),
        ("workers = \n", "not valid TOML"),
    ],
)
def test_a_bad_file_names_the_file_the_key_and_the_reason(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "tollway.toml"
    path.write_text(content)
    with pytest.raises(ConfigError) as refused:
        load({CONFIG_ENV: str(path)})
    assert str(refused.value).startswith(f"{path}: ")
    assert message in str(refused.value)


def test_a_bad_variable_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^TOLLWAY_WORKERS: must be a positive number"):
        load({"TOLLWAY_WORKERS": "-1"})


def run(*args: str, env: dict[str, str | None]) -> Any:
    # TOLLWAY_CONFIG listed so that CliRunner restores it (--config sets it for the process).
    return CliRunner().invoke(app, list(args), env={CONFIG_ENV: None, **env})


def test_serve_refuses_a_bad_file_before_starting_anything(tmp_path: Path) -> None:
    path = tmp_path / "tollway.toml"
    path.write_text('[redis]\nurll = "redis://x"\n')
    result = run("--config", str(path), "serve", env={"TOLLWAY_DATA_DIR": str(tmp_path / "data")})
    assert result.exit_code == 2
    assert f"error: {path}: unknown key 'redis.urll'; did you mean 'redis.url'?" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "data").exists()  # nothing created


def test_config_show_reports_sources_and_never_a_secret(tmp_path: Path) -> None:
    path = tmp_path / "tollway.toml"
    path.write_text('workers = 2\n[portal]\nsecret = "portal-secret-123456"\n')
    env = {"TOLLWAY_ADMIN_TOKEN": "admin-token-abcdef", "TOLLWAY_DATA_DIR": str(tmp_path)}
    result = run("--config", str(path), "config", "show", "--output", "json", env=env)
    assert result.exit_code == 0, result.output
    assert "admin-token-abcdef" not in result.output and "portal-secret-123456" not in result.output
    rows = {row["variable"]: row for row in json.loads(result.stdout)["settings"]}
    assert rows["TOLLWAY_WORKERS"] == {
        "variable": "TOLLWAY_WORKERS", "key": "workers", "value": "2", "source": "file",
        "from": f"{path}: workers",
    }  # fmt: skip
    assert (
        rows["TOLLWAY_ADMIN_TOKEN"]["value"] == "********" and rows["TOLLWAY_ADMIN_TOKEN"]["source"] == "env"
    )
    assert rows["TOLLWAY_PORTAL_SECRET"]["value"] == "********"
    assert rows["TOLLWAY_REDIS_URL"]["source"] == "default"
    table = run("--config", str(path), "config", "show", "--output", "table", env=env)
    assert "admin-token-abcdef" not in table.output and "TOLLWAY_WORKERS" in table.output


def test_config_check(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text("workers = 2\n")
    checked = run("--config", str(good), "config", "check", env={})
    assert checked.exit_code == 0 and "1 from" in checked.output
    bad = tmp_path / "bad.toml"
    bad.write_text('[admin]\naddr = "nowhere"\n')
    refused = run("--config", str(bad), "config", "check", env={})
    assert refused.exit_code == 2
    assert f"{bad}: admin.addr: address must be host:port" in refused.output

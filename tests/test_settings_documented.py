"""Every setting's environment variable is in the README's configuration table: settings are declared
once (tollway/settings/model.py), and an operator should not have to read the code to find one."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from tollway.settings import ENV_PREFIX, Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_setting_is_documented() -> None:
    text = README.read_text()
    table = text[text.index("## Configuration") :]
    missing = [
        ENV_PREFIX + name
        for item in fields(Settings)
        for name in item.metadata["env"].names
        if f"`{ENV_PREFIX}{name}`" not in table
    ]
    assert not missing, f"settings missing from the README's configuration table: {missing}"


def test_env_names_are_unique() -> None:
    names = [name for item in fields(Settings) for name in item.metadata["env"].names]
    assert len(names) == len(set(names))

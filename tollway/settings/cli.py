"""`tollway config show|check`: what the settings are and where each came from, without starting
anything or creating a secret. Exit codes as everywhere: 0 fine, 2 a setting that cannot be used
(the message names the file and key, or the variable)."""

from __future__ import annotations

from dataclasses import fields
from enum import Enum
from pathlib import Path
from typing import Any, NoReturn

import typer

from tollway.cli_output import Output, emit_data
from tollway.settings.declare import split_addr
from tollway.settings.loader import ConfigError, Loaded, load
from tollway.settings.model import Settings

MASK = "********"
# Addresses a server binds or Envoy is told: checked by `config check` as they would be at start.
_ADDRESSES = (
    "grpc_addr", "admin_addr", "gateway_addr", "envoy_admin_addr", "portal_addr", "portal_grpc_addr",
    "metrics_addr", "demo_upstream_addr",
)  # fmt: skip


def display(value: Any) -> str:
    """A value as its variable would spell it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, tuple):
        parts = []
        for item in value:
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], int):
                parts.append(f"{item[0]}:{item[1]}")
            elif isinstance(item, tuple):
                parts.append("=".join(str(part) for part in item))
            else:
                parts.append(str(item))
        return ",".join(parts)
    return str(value)


def rows(loaded: Loaded) -> list[dict[str, str]]:
    """One row per setting: variable, file key, value (secrets masked), source and where."""
    shown = []
    for item in fields(Settings):
        declared = item.metadata["env"]
        value = display(getattr(loaded.settings, item.name))
        if not item.repr and value:
            value = MASK  # a secret: never printed, whatever its source
        source = loaded.sources[item.name]
        row = {"variable": declared.variable, "key": declared.file_key, "value": value, "source": source.kind}
        if source.where and source.kind == "file":
            row["from"] = source.where
        shown.append(row)
    return shown


def _refuse(error: ConfigError) -> NoReturn:
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(2)


def _load() -> Loaded:
    try:
        loaded = load()
        for name in _ADDRESSES:
            address = getattr(loaded.settings, name)
            if address:
                try:
                    split_addr(address)
                except ValueError as exc:
                    source = loaded.sources[name]
                    raise ConfigError(f"{source.where or Settings.env_name(name)}: {exc}") from None
    except ConfigError as error:
        _refuse(error)
    return loaded


def register(app: typer.Typer) -> None:
    config = typer.Typer(
        help="The settings: every value with its source, and a check without starting anything.",
        no_args_is_help=True,
    )

    @config.command("show")
    def show(output: Output = None) -> None:
        """Every setting: variable, file key, value (secrets masked) and source (env, file, default)."""
        loaded = _load()
        data: dict[str, Any] = {"config_file": str(loaded.config_file or ""), "settings": rows(loaded)}
        if not loaded.config_file:
            del data["config_file"]
        emit_data(data)

    @config.command("check")
    def check(output: Output = None) -> None:
        """Validate the environment and the config file as a start would; exit 2 with the file, key
        and reason when a setting cannot be used."""
        loaded = _load()
        counts = {kind: sum(1 for s in loaded.sources.values() if s.kind == kind) for kind in ("env", "file")}
        where = f"{counts['file']} from {loaded.config_file}, " if loaded.config_file else ""
        typer.echo(
            f"ok: {len(loaded.sources)} settings: {where}{counts['env']} from the environment, "
            "the rest defaults",
            err=True,
        )

    app.add_typer(config, name="config")


def use_config_file(path: Path | None) -> None:
    """`tollway --config PATH`: every command (and every worker a server starts) reads this file."""
    import os

    from tollway.settings.loader import CONFIG_ENV

    if path is not None:
        os.environ[CONFIG_ENV] = str(path.resolve())

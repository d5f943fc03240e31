"""The one loader: each setting from its environment variable, else from the config file, else its
default, and where each value came from (for `tollway config show`).

The config file is TOML (`tollway.toml`), named by `tollway --config PATH` or TOLLWAY_CONFIG; there is
no implicit file in the current directory. Its keys are derived from the variables (declare.py):
`[redis] url = "..."` or `redis_url = "..."` for TOLLWAY_REDIS_URL, `workers = 2` for TOLLWAY_WORKERS.
A value is a string, number, boolean or a list of those (joined with commas, as the variable would
be), and goes through the same parser as the variable's text. An unknown key, a value of the wrong
kind or one its parser refuses is a ConfigError naming the file, the key and why (with the nearest
known key for a typo); a bad variable names the variable."""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from tollway.settings.declare import ENV_PREFIX, EnvVar
from tollway.settings.model import Settings

CONFIG_ENV = ENV_PREFIX + "CONFIG"


class ConfigError(ValueError):
    """A setting that cannot be used; the message names its file and key (or variable) and why."""


@dataclass(frozen=True)
class Source:
    """Where a value came from: `env` (the variable), `file` (file: key) or `default`."""

    kind: str
    where: str = ""


@dataclass(frozen=True)
class Loaded:
    settings: Settings
    sources: dict[str, Source]
    config_file: Path | None


def declarations() -> dict[str, EnvVar]:
    """Field name -> its declaration, in declaration order."""
    return {item.name: item.metadata["env"] for item in fields(Settings)}


def _file_keys() -> dict[str, str]:
    """Flat file key (`redis_url`) -> field name."""
    return {declared.names[0].lower(): name for name, declared in declarations().items()}


def _suggestion(shown: str) -> str:
    known = [declared.file_key for declared in declarations().values()]
    close = difflib.get_close_matches(shown, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else "; `tollway config show` lists every key"


def _text(value: Any, where: str) -> str:
    """A file value as the variable's text: the same parser reads both."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    if isinstance(value, list) and all(
        isinstance(item, int | float | str) and not isinstance(item, bool) for item in value
    ):
        return ",".join(str(item) for item in value)
    # Tables, dates and times, lists of lists: no setting takes them.
    raise ConfigError(f"{where}: must be a string, number, boolean or list of strings or numbers")


def read_file(path: Path) -> dict[str, tuple[str, str]]:
    """Field name -> (the key as written, the value as text)."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    entries: list[tuple[str, str, Any]] = []  # (flat key, shown key, value)
    for key, value in data.items():
        if isinstance(value, dict):
            for sub, item in value.items():
                if isinstance(item, dict):
                    raise ConfigError(f"{path}: [{key}.{sub}]: settings nest one table deep at most")
                entries.append((f"{key}_{sub}".lower(), f"{key}.{sub}", item))
        else:
            entries.append((key.lower(), key, value))
    known = _file_keys()
    found: dict[str, tuple[str, str]] = {}
    for flat, shown, value in entries:
        name = known.get(flat)
        if name is None:
            raise ConfigError(f"{path}: unknown key {shown!r}{_suggestion(shown)}")
        if name in found:
            raise ConfigError(f"{path}: {shown!r} is set twice (also as {found[name][0]!r})")
        found[name] = (shown, _text(value, f"{path}: {shown}"))
    return found


def _parse(declared: EnvVar, text: str, where: str) -> Any:
    try:
        return declared.parse(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load(environ: Mapping[str, str] | None = None, config_file: Path | None = None) -> Loaded:
    """Settings from the environment (a variable set to a non-empty value wins), the config file
    (`config_file`, else TOLLWAY_CONFIG) and the defaults."""
    source = os.environ if environ is None else environ
    path = config_file or (Path(source[CONFIG_ENV]) if source.get(CONFIG_ENV) else None)
    from_file = read_file(path) if path is not None else {}
    values: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    for name, declared in declarations().items():
        read = declared.read(source)
        if read is not None and read[1]:
            variable, text = read
            values[name] = _parse(declared, text, variable)
            sources[name] = Source("env", variable)
        elif name in from_file:
            shown, text = from_file[name]
            where = f"{path}: {shown}"
            values[name] = _parse(declared, text, where)
            sources[name] = Source("file", where)
        else:
            sources[name] = Source("default")
    return Loaded(Settings(**values), sources, path)

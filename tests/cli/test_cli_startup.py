"""The CLI starts fast: importing it (what `tollway --help` and every admin command pay before doing
anything) loads no gRPC, database, server or event-loop code; a command imports gRPC only to call.
A component that imports one of these at module level in its component.py or cli.py fails here
(measured: `tollway --help` 1.0 s of CPU with them, 0.15-0.3 s without, on the 2-core machine)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEAVY = ("grpc", "sqlalchemy", "sqlmodel", "asyncio", "uvicorn", "redis", "starlette", "aiosqlite")


def test_importing_the_cli_loads_nothing_heavy() -> None:
    probe = f"import sys, tollway.app.cli; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"imported by the CLI at start: {result.stdout.strip()}"


def test_only_the_named_command_group_is_built() -> None:
    from tollway.app.cli import _command_name

    assert _command_name(["plan", "list"]) == "plan"
    assert _command_name(["--config", "tollway.toml", "quota", "sub_1"]) == "quota"
    assert _command_name(["--config=x.toml", "usage"]) == "usage"
    assert _command_name(["--help"]) is None
    tollway = str(Path(sys.executable).parent / "tollway")
    for argv, expected in ((["plan", "--help"], "Usage: tollway plan"), (["plna"], "Did you mean 'plan'?")):
        result = subprocess.run([tollway, *argv], capture_output=True, text=True, timeout=60)
        assert expected in result.stdout + result.stderr, argv

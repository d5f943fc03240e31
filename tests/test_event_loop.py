"""The serving processes' event loop choice (TOLLWAY_EVENT_LOOP) and the collector's startup freeze."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest
import uvloop

from tollway import event_loop


def test_auto_and_uvloop_choose_uvloop_when_installed() -> None:
    assert event_loop.loop_factory("auto") is uvloop.new_event_loop
    assert event_loop.loop_factory("UVLOOP") is uvloop.new_event_loop


def test_asyncio_keeps_the_standard_loop() -> None:
    assert event_loop.loop_factory("asyncio") is None


def test_unknown_choice_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="auto, uvloop, asyncio"):
        event_loop.loop_factory("tokio")


def test_environment_variable_decides_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(event_loop.ENV_VAR, "asyncio")
    assert event_loop.loop_factory() is None
    monkeypatch.setenv(event_loop.ENV_VAR, "")
    assert event_loop.loop_factory() is uvloop.new_event_loop


def test_freeze_outside_run_leaves_the_collector_alone() -> None:
    before = gc.get_freeze_count()
    event_loop.freeze_startup_objects()
    assert gc.get_freeze_count() == before


def test_run_serves_on_uvloop_and_freezes_startup_objects() -> None:
    # In a child: run() tunes the process's collector for good.
    code = (
        "import asyncio, gc\n"
        "from tollway import event_loop\n"
        "async def main():\n"
        "    event_loop.freeze_startup_objects()\n"
        "    loop = type(asyncio.get_running_loop()).__module__\n"
        "    return loop, gc.get_freeze_count() > 0, gc.get_threshold()[0]\n"
        "print(event_loop.run(main()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"('uvloop', True, {event_loop.GEN0_THRESHOLD})"


def test_run_on_the_standard_loop() -> None:
    code = (
        "import asyncio\n"
        "from tollway import event_loop\n"
        "async def main():\n"
        "    return type(asyncio.get_running_loop()).__module__\n"
        "print(event_loop.run(main(), 'asyncio'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "asyncio.unix_events"

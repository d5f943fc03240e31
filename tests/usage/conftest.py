from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Stack, start_stack, stop_stack
from tollway.vocabulary import ThrottleMode


@pytest.fixture(scope="module", params=list(ThrottleMode), ids=str)
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A whole stack in each throttle mode: usage classifies the same traffic the same way in both."""
    started = start_stack(
        Path(tmp_path_factory.mktemp("usage-stack")), usage_flush_ms=50, throttle_mode=request.param
    )
    try:
        yield started
    finally:
        stop_stack(started)

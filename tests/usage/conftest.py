from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Stack, start_stack, stop_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    started = start_stack(Path(tmp_path_factory.mktemp("usage-stack")), usage_flush_ms=50)
    try:
        yield started
    finally:
        stop_stack(started)

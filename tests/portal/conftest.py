from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Stack, start_stack, stop_stack


@pytest.fixture(scope="module")
def portal_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A whole Tollway process (portal included) with a real Envoy, for the module's tests."""
    started = start_stack(Path(tmp_path_factory.mktemp("portal-stack")))
    try:
        yield started
    finally:
        stop_stack(started)

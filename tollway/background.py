"""What every background loop of a component does when it stops: cancel its task and wait for it to
end, so nothing it started outlives the component (a cancelled task that is never awaited can still
run its `finally` after the database or Redis client it uses was closed)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_task(task: asyncio.Task[Any] | None) -> None:
    """Cancels `task` (None: nothing to stop) and returns once it has ended."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

"""Background tasks are tracked, and a task that dies says so in the log, never silently."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def log_failure(what: str) -> Callable[[asyncio.Task[Any]], None]:
    """A done-callback that logs the task's exception, if it ended with one, as "<what> failed"."""

    def done(task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", what, exc_info=task.exception())

    return done


class TaskSet:
    """Background tasks kept referenced until they end (asyncio holds only weak references),
    each failure logged as "<what> failed"; ``wait`` and ``cancel`` end them on shutdown."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, work: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(log_failure(self._what))
        return task

    async def wait(self, within_s: float) -> None:
        """Wait up to ``within_s`` seconds for every task to end."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=within_s)

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()

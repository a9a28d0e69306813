"""Background tasks are tracked, and a task that dies says so in the log, never silently."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def log_failure(what: str) -> Callable[[asyncio.Task[Any]], None]:
    """A done-callback that logs the task's exception, if it ended with one, as "<what> failed"."""

    def done(task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", what, exc_info=task.exception())

    return done

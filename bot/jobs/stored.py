"""Writes that wait for the disk: what happens to a job is recorded before anyone is told of it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from bot.runtime.backoff import Backoff
from db.errors import StorageUnavailable

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


async def stored(call: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
    """``call(...)`` to the store, tried again while the storage refuses it (a disk I/O error, a full disk).

    What happens to a job is recorded before anyone is told of it, so its outcome waits for the disk
    rather than being lost (a follower that gave up left the job unfinished and unrefunded until the
    bot restarted). Each try is one transaction that changed nothing when it was refused.
    """
    refused = Backoff()
    what = f"{call.__name__} of job {args[0]}" if args else call.__name__
    while True:
        try:
            result = await call(*args, **kwargs)
        except StorageUnavailable as error:
            delay = refused.refused()
            if refused.worth_logging:
                log.warning("%s was refused (%s); trying again every few seconds", what, error)
            await asyncio.sleep(delay)
            continue
        if refusals := refused.reset():
            log.warning("%s was recorded after %d refusal(s)", what, refusals)
        return result

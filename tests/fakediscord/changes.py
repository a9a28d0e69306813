"""Waiting for the fake's state to satisfy a condition, without polling and without hanging.

Every mutation of the fake (a message posted or edited, a callback received, a client connected)
calls :meth:`ChangeFeed.notify`; waiters re-check their condition then. Every wait has a deadline,
and the timeout error names what was awaited, so a failing end-to-end test says why.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class ChangeFeed:
    """A broadcast "something changed" signal for coroutines on the fake's event loop."""

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None

    def notify(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None

    async def wait_until(
        self,
        check: Callable[[], T | None],
        *,
        timeout: float,
        what: str,
        poll: float | None = None,
    ) -> T:
        """Return the first non-None result of ``check``, re-evaluated after every change.

        ``poll`` also re-checks every so many seconds, for conditions that depend on state
        outside the fake (the client's cache), which changes without notifying the feed.
        Raises ``TimeoutError`` naming ``what`` once ``timeout`` seconds pass without a result.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = check()
            if result is not None:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
            if self._event is None:
                self._event = asyncio.Event()
            event = self._event
            try:
                await asyncio.wait_for(event.wait(), remaining if poll is None else min(remaining, poll))
            except TimeoutError:
                continue

"""Waiting for the fake's state to satisfy a condition, without polling and without hanging.

Every mutation of the fake (a message posted or edited, a callback received, a client connected)
calls :meth:`ChangeFeed.notify`; waiters re-check their condition then. Every wait has a deadline,
and the timeout error names what was awaited, so a failing end-to-end test says why.

The fake shares its event loop with the bot under test, so waiting must cost that loop almost
nothing: a wait is one future and one timer, and a burst of changes re-checks every waiter once, in
one callback. (Waking a hundred waiters with a fresh ``asyncio.wait_for`` task on every change cost
the bot's loop tens of thousands of task switches when a hundred interactions arrived at once.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(slots=True, eq=False)
class _Waiter:
    check: Callable[[], Any]
    future: asyncio.Future[Any]

    def recheck(self) -> None:
        if self.future.done():
            return
        try:
            result = self.check()
        except Exception as error:
            self.future.set_exception(error)
            return
        if result is not None:
            self.future.set_result(result)


class ChangeFeed:
    """A broadcast "something changed" signal for coroutines on the fake's event loop."""

    def __init__(self) -> None:
        self._waiters: set[_Waiter] = set()
        self._recheck_scheduled = False

    def notify(self) -> None:
        """Re-check every waiter once, soon: several changes in a row cost one pass."""
        if not self._waiters or self._recheck_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a change made outside the loop (a test's setup code)
            self._recheck_all()
            return
        self._recheck_scheduled = True
        loop.call_soon(self._recheck_all)

    def _recheck_all(self) -> None:
        self._recheck_scheduled = False
        for waiter in list(self._waiters):
            waiter.recheck()

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
        result = check()
        if result is not None:
            return result
        loop = asyncio.get_running_loop()
        waiter = _Waiter(check, loop.create_future())
        self._waiters.add(waiter)
        poller: asyncio.TimerHandle | None = None

        def poll_again() -> None:
            nonlocal poller
            waiter.recheck()
            if poll is not None and not waiter.future.done():
                poller = loop.call_later(poll, poll_again)

        if poll is not None:
            poller = loop.call_later(poll, poll_again)
        deadline = loop.call_later(timeout, _expire, waiter.future, f"timed out after {timeout:g}s waiting for {what}")
        try:
            return await waiter.future
        finally:
            self._waiters.discard(waiter)
            deadline.cancel()
            if poller is not None:
                poller.cancel()


def _expire(future: asyncio.Future[Any], message: str) -> None:
    if not future.done():
        future.set_exception(TimeoutError(message))

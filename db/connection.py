"""One thread owns the SQLite connection; a whole transaction crosses to it in one trip.

A coroutine hands ``run`` a plain function of the connection; the function runs in
the connection's thread and its result (or exception) comes back to the event loop.
Calls run one at a time, in the order they were made, so a function sees no other
coroutine's statements half-done, and a transaction that makes five statements costs
the loop one thread hop instead of five. (With one hop per statement, a hundred
simultaneous admissions queued some 2,800 hops behind each other; on a 2-core host
that alone took half a second.)
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class ConnectionThread:
    """A ``sqlite3.Connection`` used only from its own thread, in autocommit mode (transactions are explicit)."""

    def __init__(self, executor: ThreadPoolExecutor, conn: sqlite3.Connection) -> None:
        self._executor = executor
        self._conn = conn
        self._closed = False

    @classmethod
    async def connect(cls, path: Path) -> ConnectionThread:
        """Open ``path`` in a new thread; raises ``sqlite3.Error`` as ``sqlite3.connect`` would."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="latentcord-db")

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            return conn

        try:
            conn = await asyncio.wrap_future(executor.submit(connect))
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(executor, conn)

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, function: Callable[[sqlite3.Connection], T]) -> Future[T]:
        """Queue ``function(conn)`` in the connection's thread; the caller awaits the future."""
        if self._closed:
            raise RuntimeError("The database connection is closed.")
        return self._executor.submit(function, self._conn)

    async def run(self, function: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.wrap_future(self.submit(function))

    async def close(self) -> None:
        """Finish what is queued, close the connection and end the thread before returning.

        Nothing is left to call back into the event loop afterwards, so closing the loop
        right after this cannot make the thread fail.
        """
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.wrap_future(self._executor.submit(self._conn.close))
        finally:
            self._executor.shutdown(wait=True)  # the thread is idle by now: this only joins it

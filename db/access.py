"""The base of ``Store``: the connection thread, the clock, the guild cache and the plumbing.

``StoreAccess`` holds what every part of the store shares: the connection
thread (``db.connection``), the injected clock, the set of writes in flight and
the per-guild cache (settings, filter terms, styles, fine-tunes, disabled models) with its generation counter. Its
``_run``, ``_write`` and ``_read`` are how the query mixins (``db.guilds``,
``db.quotas``) and ``db.store`` reach the file; the small row helpers below
(``_fetchall``, ``_ledger_guild``, ...) are shared by them all. This module
imports nothing from the other modules of the store.

Three rules shape the store:

* Every write runs in one ``BEGIN IMMEDIATE`` transaction. Taking SQLite's write
  lock at the start (instead of on the first write) is what makes
  check-then-charge in ``admit_job`` safe across processes and connections.
* One thread owns the connection (``db.connection``) and runs a whole read or
  transaction per call, in the order they were asked for, so coroutines never
  interleave inside a transaction and each costs the event loop one thread hop.
* A write, once started, runs to its end even when the awaiting task is
  cancelled (it is shielded), so a cancelled Discord interaction can never
  leave a transaction open or a job charged but not recorded.

When the file itself fails (a disk I/O error, a full disk, a lock held past the busy
timeout), the call raises ``StorageUnavailable``: its transaction rolled back and
SQLite takes the next one as usual, so the caller may try again later.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar, cast

from db.connection import ConnectionThread
from db.errors import StorageUnavailable, StoreInputError
from db.records import DM_GUILD_ID, MAX_CREDITS

T = TypeVar("T")

DAY_S: Final = 86_400.0

# SQLite's primary result codes that blame the storage, not the statement: the same call may work later.
_STORAGE_FAULTS: Final = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
    }
)


class StoreAccess:
    """The connection, clock and guild cache of a ``Store``, and the calls that reach the file."""

    def __init__(self, conn: ConnectionThread, path: Path, clock: Callable[[], float]) -> None:
        self._conn = conn
        self._path = path
        self._clock = clock
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._closed = False
        # Every admission reads its guild's settings, filter terms, styles, fine-tunes and disabled models;
        # moderators change them rarely, and only through this object, so they are kept here (by
        # what, then guild) and dropped on each change. Values are immutable.
        self._guild_caches: dict[str, dict[int, Any]] = {}
        self._guild_generation: dict[int, int] = {}

    # ------------------------------------------------------------------ plumbing

    async def _run(self, function: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``function`` in the connection's thread: reads, and whole transactions."""
        if self._closed:
            raise RuntimeError("The store is closed.")
        try:
            return await self._conn.run(function)
        except sqlite3.OperationalError as exc:
            if _blames_storage(exc):
                raise self._unavailable(exc) from exc
            raise

    async def _write(self, body: Callable[[sqlite3.Connection, float], T], *, guild_id: int | None = None) -> T:
        """Run ``body(conn, now)`` in one ``BEGIN IMMEDIATE`` transaction, committed if it returns.

        The whole transaction is one call in the connection's thread. It is shielded:
        if the caller is cancelled, the write still finishes (or rolls back) and the
        connection is never left inside a transaction. ``guild_id`` names a guild whose
        settings or filter terms the write changes, so their cached copies are dropped
        before it starts and again once it has ended.
        """
        if self._closed:
            raise RuntimeError("The store is closed.")
        now = self._clock()

        def transaction(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = body(conn, now)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        if guild_id is not None:
            self._guild_changed(guild_id)
        task = asyncio.ensure_future(self._conn.run(transaction))
        self._in_flight.add(task)
        task.add_done_callback(_forget_task(self._in_flight))
        if guild_id is not None:
            task.add_done_callback(lambda _: self._guild_changed(guild_id))
        try:
            return await asyncio.shield(task)
        except sqlite3.OperationalError as exc:
            if _blames_storage(exc):
                raise self._unavailable(exc) from exc
            raise

    def _unavailable(self, exc: sqlite3.OperationalError) -> StorageUnavailable:
        return StorageUnavailable(
            f"The database {self._path} did not take the call ({exc}); nothing was changed. "
            "Check the disk's free space and the file's attributes and locks."
        )

    async def _read(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[sqlite3.Row]:
        return await self._run(lambda conn: _fetchall(conn, sql, params))

    async def _per_guild(self, what: str, guild_id: int, load: Callable[[sqlite3.Connection], T]) -> T:
        """``load`` run in the connection's thread, kept for ``guild_id`` until a write names that guild."""
        cache = self._guild_caches.setdefault(what, {})
        if guild_id in cache:
            return cast(T, cache[guild_id])
        generation = self._guild_generation.get(guild_id, 0)
        value = await self._run(load)
        if self._guild_generation.get(guild_id, 0) == generation:  # no change landed while reading
            cache[guild_id] = value
        return value

    def _guild_changed(self, guild_id: int) -> None:
        self._guild_generation[guild_id] = self._guild_generation.get(guild_id, 0) + 1
        for cache in self._guild_caches.values():
            cache.pop(guild_id, None)


# ---------------------------------------------------------------------- helpers


def _fetchall(conn: sqlite3.Connection, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[sqlite3.Row]:
    return conn.execute(sql, params).fetchall()


def _blames_storage(exc: sqlite3.OperationalError) -> bool:
    """Whether the file failed the call (I/O, full, read-only, locked), rather than a statement being wrong."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in _STORAGE_FAULTS


def _ledger_guild(guild_id: int | None) -> int:
    return DM_GUILD_ID if guild_id is None else guild_id


def _text(value: int | None) -> str | None:
    return None if value is None else str(value)


def _check_credits(credits: int) -> None:
    if isinstance(credits, bool) or not isinstance(credits, int) or not 0 <= credits <= MAX_CREDITS:
        raise StoreInputError(f"Credits must be a whole number from 0 to {MAX_CREDITS:,}.")


def _forget_task(tasks: set[asyncio.Task[Any]]) -> Callable[[asyncio.Task[Any]], None]:
    """Drop a finished write from the in-flight set and mark its exception as seen.

    If the awaiting caller was cancelled, nobody else reads the exception; the
    transaction has already rolled back, so there is nothing more to do with it.
    """

    def done(task: asyncio.Task[Any]) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()

    return done

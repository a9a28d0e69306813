"""The one owner of Latentcord's SQLite file.

Everything that must survive a restart goes through ``Store``: guild settings
and their audit log, filter terms, quota overrides, the quota ledger and jobs.
Callers get frozen value objects (``db.records``), never rows or SQL.

``Store`` is assembled from parts: ``db.access`` (the connection thread, the
clock, the guild cache and the transaction rules), ``db.guilds`` (settings,
filter terms and the audit log) and ``db.quotas`` (overrides, limits, usage and
the ledger), ``db.members`` (members' own preferences), ``db.finetunes`` (approved
LoRAs, embeddings and models), ``db.styles``, ``db.moodboards`` (sets of reference
pictures), ``db.names`` (the one namespace those share), ``db.stats`` (what /queue and
/stats read, and ⭐ counts), ``db.starboard`` (stars without the requester, reposts once), ``db.gallery`` (the results
a web gallery shows, and its sign-in sessions) and ``db.jobs`` (admission
as one check-then-charge transaction, status, refunds and delivery). This module
opens, migrates and closes the file.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from db.access import DAY_S
from db.connection import ConnectionThread
from db.errors import StorageUnavailable, StoreError
from db.finetunes import FineTuneQueries
from db.gallery import GalleryQueries
from db.guilds import GuildQueries
from db.jobs import UNSET, JobQueries
from db.members import MemberQueries
from db.moodboards import MoodboardQueries
from db.names import NameQueries
from db.quotas import QuotaQueries
from db.records import R
from db.schema import apply_migrations, latest_version, load_migrations, read_user_version
from db.starboard import StarboardQueries
from db.stats import StatsQueries
from db.styles import StyleQueries

__all__ = ["DAY_S", "UNSET", "Store"]

#: How long a connection waits for another one's write lock before giving up.
#: Admissions hold the lock for a millisecond or two, so this is only reached
#: when something is badly wrong (a stuck process holding the file).
BUSY_TIMEOUT_MS: Final = 15_000


class Store(
    GuildQueries,
    QuotaQueries,
    MemberQueries,
    FineTuneQueries,
    StyleQueries,
    MoodboardQueries,
    NameQueries,
    StatsQueries,
    StarboardQueries,
    GalleryQueries[R],
    JobQueries[R],
):
    """Typed access to the database; create it with ``await Store.open(path, recipe=...)``.

    ``R`` is the application's recipe dataclass: jobs are written from it and read back into it.
    """

    def __init__(self, conn: ConnectionThread, path: Path, clock: Callable[[], float], recipe: type[R]) -> None:
        super().__init__(conn, path, clock)
        self._recipe_type = recipe

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(cls, path: Path, *, recipe: type[R], clock: Callable[[], float] = time.time) -> Store[R]:
        """Open (creating if needed) and migrate the database at ``path``.

        Every problem with the file becomes a ``StoreError`` that names it. The
        schema version is checked before anything is written, so a corrupt file
        or one from a newer Latentcord is left byte-for-byte as it was.
        """
        path = Path(path)
        migrations = load_migrations()
        known = latest_version(migrations)

        # 1. Make sure the folder exists.
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"Cannot create the folder for the database {path} ({exc.strerror or exc}); "
                "check the path and the permissions of the folders above it."
            ) from exc

        # 2. Connect, in autocommit mode (isolation_level=None) so transactions are ours to begin and end.
        try:
            conn = await ConnectionThread.connect(path)
        except sqlite3.Error as exc:
            raise _open_error(path, exc) from exc

        def prepare(raw: sqlite3.Connection) -> int:
            raw.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")
            # 3. Read the version first: this is the first read of the file, so it is also where
            #    a file that is not a database fails, before anything could write to it.
            found = read_user_version(raw)
            if found > known:
                raise _too_new(path, found, known)
            # 4. Connection settings that the schema and the concurrency story rely on.
            raw.execute("PRAGMA journal_mode = WAL")
            # In WAL mode NORMAL syncs at checkpoints, not on every commit: a crash of the process
            # loses nothing, and a burst of admissions is not bound by one fsync each. (A power cut
            # may roll back the last commits: a job admitted then is gone with its charge.)
            raw.execute("PRAGMA synchronous = NORMAL")
            # 5. Migrate; the version is read again under the write lock in case another process won.
            #    Foreign keys are off meanwhile, so a migration may rebuild a table as SQLite's
            #    documentation describes; the runner checks every reference before it commits.
            raw.execute("PRAGMA foreign_keys = OFF")
            found = apply_migrations(raw, migrations)
            if found > known:
                raise _too_new(path, found, known)
            raw.execute("PRAGMA foreign_keys = ON")
            return found

        try:
            await conn.run(prepare)
        except sqlite3.Error as exc:
            await conn.close()
            raise _open_error(path, exc) from exc
        except BaseException:
            await conn.close()
            raise

        store = cls(conn, path, clock, recipe)
        try:
            await store.expire_interaction_tokens()
        except StorageUnavailable:  # names the file and what to check
            await store.close()
            raise
        except sqlite3.Error as exc:
            await store.close()
            raise _open_error(path, exc) from exc
        return store

    @property
    def path(self) -> Path:
        return self._path

    async def schema_version(self) -> int:
        """The version the file is at; after ``open`` that is the latest this code knows."""
        return await self._run(read_user_version)

    async def close(self) -> None:
        """Let started writes finish, then close the connection and its thread. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        await self._conn.close()


def _too_new(path: Path, found: int, known: int) -> StoreError:
    return StoreError(
        f"{path} was written by a newer Latentcord (schema {found}, this one knows {known}); "
        "upgrade Latentcord or use another database file. The file was not changed."
    )


def _open_error(path: Path, exc: sqlite3.Error) -> StoreError:
    code = getattr(exc, "sqlite_errorcode", None)
    if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        return StoreError(
            f"{path} is not a usable SQLite database ({exc}); restore it from a backup or use another database file."
        )
    return StoreError(
        f"Cannot open the database {path} for reading and writing ({exc}); "
        "check the path and the permissions of the file and its folder."
    )

"""The one owner of Latentcord's SQLite file.

Everything that must survive a restart goes through ``Store``: guild settings
and their audit log, filter terms, quota overrides, the quota ledger and jobs.
Callers get frozen value objects (``db.records``), never rows or SQL.

``Store`` is assembled from parts: ``db.access`` (the connection thread, the
clock, the guild cache and the transaction rules), ``db.guilds`` (settings,
filter terms and the audit log) and ``db.quotas`` (overrides, limits, usage and
the ledger). This module opens and closes the file and holds the jobs: their
admission (check-then-charge in one transaction), status, refunds and delivery.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from db.access import DAY_S, _fetchall, _ledger_guild
from db.connection import ConnectionThread
from db.errors import QuotaExhausted, StoreError, UnknownJob
from db.guilds import GuildQueries
from db.quotas import QuotaQueries, _check_window, _quota_limit, _refund, _window_usage
from db.records import INTERACTION_TOKEN_LIFETIME_S, JobRecord, JobStatus, NewJob, QuotaRule
from db.schema import apply_migrations, latest_version, load_migrations, read_user_version

# Callers import DAY_S (db/__init__.py), JobRecord and NewJob (bot/service.py) from this module too.

#: How long a connection waits for another one's write lock before giving up.
#: Admissions hold the lock for a millisecond or two, so this is only reached
#: when something is badly wrong (a stuck process holding the file).
BUSY_TIMEOUT_MS: Final = 15_000


class _Unset:
    """Marks an argument the caller left out, so that ``None`` can mean "clear it"."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()

_JOB_SELECT = """
SELECT j.*,
       COALESCE((SELECT l.credits FROM ledger AS l WHERE l.job_id = j.id AND l.kind = 'charge'), 0)
           AS charged,
       COALESCE((SELECT -SUM(l.credits) FROM ledger AS l WHERE l.job_id = j.id AND l.kind <> 'charge'), 0)
           AS refunded
FROM jobs AS j
"""


class Store(GuildQueries, QuotaQueries):
    """Typed access to the database; create it with ``await Store.open(path)``."""

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(cls, path: Path, *, clock: Callable[[], float] = time.time) -> Store:
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
            raw.execute("PRAGMA foreign_keys = ON")
            # 5. Migrate; the version is read again under the write lock in case another process won.
            found = apply_migrations(raw, migrations)
            if found > known:
                raise _too_new(path, found, known)
            return found

        try:
            await conn.run(prepare)
        except sqlite3.Error as exc:
            await conn.close()
            raise _open_error(path, exc) from exc
        except BaseException:
            await conn.close()
            raise

        store = cls(conn, path, clock)
        try:
            await store.expire_interaction_tokens()
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

    # ------------------------------------------------------------------ jobs

    async def admit_job(
        self, job: NewJob, *, cost: int | None = None, limit: int | QuotaRule | None, window_s: float = DAY_S
    ) -> JobRecord:
        """Charge the user and record the job as ``queued``, or raise ``QuotaExhausted``.

        ``limit`` is a number of credits, or a ``QuotaRule`` resolved to one inside the same
        transaction (as ``quota_limit`` would), which saves a round trip per admission, or
        ``None``: no quota (the owner's own console); the charge is still recorded.

        Check and charge happen in one ``BEGIN IMMEDIATE`` transaction, so any
        number of concurrent admissions, from this connection or others on the
        same file, never admit more than the limit allows. ``cost`` defaults to
        ``job.cost``; passing a different value is a bug and raises ``ValueError``.
        """
        if cost is None:
            cost = job.cost
        if cost != job.cost:
            raise ValueError(f"admit_job was given cost={cost} for a job that costs {job.cost}.")
        if isinstance(limit, int) and limit < 0:
            raise ValueError("A quota limit cannot be negative.")
        _check_window(window_s)
        guild = _ledger_guild(job.guild_id)

        def body(conn: sqlite3.Connection, now: float) -> JobRecord:
            # 1. The user's limit and what is already counted in the window.
            if limit is not None:
                credits = limit if isinstance(limit, int) else _quota_limit(conn, guild, job.user_id, limit)
                window = _window_usage(conn, guild, job.user_id, now, window_s)
                if window.used + cost > credits:
                    raise QuotaExhausted(used=window.used, limit=credits, cost=cost, next_free_at=window.next_free_at)
            # 2. The job row.
            cursor = conn.execute(
                "INSERT INTO jobs (kind, parent_job_id, parent_image, guild_id, channel_id, user_id, "
                "prompt, negative_prompt, model, width, height, steps, guidance, strength, seeds, cost, "
                "scheduler, nsfw_allowed, status, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?)",
                (
                    str(job.kind),
                    job.parent_job_id,
                    job.parent_image,
                    job.guild_id,
                    job.channel_id,
                    job.user_id,
                    job.prompt,
                    job.negative_prompt,
                    job.model,
                    job.width,
                    job.height,
                    job.steps,
                    job.guidance,
                    job.strength,
                    json.dumps([int(seed) for seed in job.seeds]),
                    cost,
                    job.scheduler,
                    int(bool(job.nsfw_allowed)),
                    now,
                ),
            )
            job_id = cursor.lastrowid
            assert job_id is not None
            # 3. Its one and only charge.
            conn.execute(
                "INSERT INTO ledger (guild_id, user_id, kind, credits, job_id, at, recorded_at, reason) "
                "VALUES (?, ?, 'charge', ?, ?, ?, ?, ?)",
                (guild, job.user_id, cost, job_id, now, now, f"{job.kind} job"),
            )
            return _fetch_job(conn, job_id)

        return await self._write(body)

    async def mark_running(self, job_id: int) -> bool:
        """``queued`` -> ``running``. False (and nothing changed) if the job is not queued,
        e.g. it was cancelled while waiting."""
        return await self._transition(
            job_id,
            "status = 'running', started_at = :now",
            (JobStatus.QUEUED,),
            {},
        )

    async def mark_done(
        self,
        job_id: int,
        *,
        image_paths: Sequence[str],
        withheld: Sequence[int],
        timings: Mapping[str, float],
    ) -> bool:
        """``running`` -> ``done``, with where the images are, which were withheld (indexes into
        the job's images, i.e. its seeds) and how long each phase took."""
        paths = [str(path) for path in image_paths]
        hidden = sorted({int(index) for index in withheld})
        if any(index < 0 for index in hidden):
            raise ValueError(f"Withheld image indexes cannot be negative: {hidden}.")
        return await self._transition(
            job_id,
            "status = 'done', finished_at = :now, image_paths = :paths, withheld = :withheld, timings = :timings, "
            "delivery = 'pending', delivery_started_at = :now",
            (JobStatus.RUNNING,),
            {
                "paths": json.dumps(paths),
                "withheld": json.dumps(hidden),
                "timings": json.dumps({str(key): float(value) for key, value in timings.items()}),
            },
        )

    async def mark_failed(self, job_id: int, reason: str) -> bool:
        return await self._transition(
            job_id,
            "status = 'failed', finished_at = :now, error = :reason",
            (JobStatus.QUEUED, JobStatus.RUNNING),
            {"reason": reason},
        )

    async def mark_cancelled(self, job_id: int) -> bool:
        return await self._transition(
            job_id,
            "status = 'cancelled', finished_at = :now",
            (JobStatus.QUEUED, JobStatus.RUNNING),
            {},
        )

    async def _transition(
        self, job_id: int, assignments: str, allowed_from: tuple[str, ...], params: dict[str, Any]
    ) -> bool:
        """Move a job on only from the statuses given; the ``WHERE`` makes the check atomic."""
        placeholders = ", ".join(f":from{i}" for i in range(len(allowed_from)))

        def body(conn: sqlite3.Connection, now: float) -> bool:
            values = {**params, "now": now, "id": job_id}
            values.update({f"from{i}": str(status) for i, status in enumerate(allowed_from)})
            cursor = conn.execute(
                f"UPDATE jobs SET {assignments} WHERE id = :id AND status IN ({placeholders})", values
            )
            if cursor.rowcount:
                return True
            _require_job(conn, job_id)
            return False

        return await self._write(body)

    async def refund(self, job_id: int, credits: int, reason: str) -> int:
        """Give credits back for a job; returns how many were actually given back.

        The refund is clamped so that everything given back for a job never
        exceeds its charge (calling it twice for the same failure is harmless).
        It shares the charge's place in the rolling window, so it frees credits
        now if the charge still counts and changes nothing once it has expired.
        """
        if credits < 0:
            raise ValueError("A refund cannot be negative.")

        def body(conn: sqlite3.Connection, now: float) -> int:
            _require_job(conn, job_id)
            return _refund(conn, job_id, credits, reason, now)

        return await self._write(body)

    async def get_job(self, job_id: int) -> JobRecord | None:
        rows = await self._read(_JOB_SELECT + " WHERE j.id = ?", (job_id,))
        return _job_from_row(rows[0]) if rows else None

    async def unfinished_jobs(self) -> list[JobRecord]:
        """Jobs ``queued`` or ``running``, oldest first (the order they were admitted in)."""
        rows = await self._read(_JOB_SELECT + " WHERE j.status IN ('queued', 'running') ORDER BY j.id")
        return [_job_from_row(row) for row in rows]

    async def requeue_unfinished(self) -> list[JobRecord]:
        """After a crash: put ``running`` jobs back to ``queued`` and return every unfinished job
        in admission order. Nothing is charged: a job's charge was written once, at admission."""

        def body(conn: sqlite3.Connection, now: float) -> list[JobRecord]:
            conn.execute("UPDATE jobs SET status = 'queued', started_at = NULL WHERE status = 'running'")
            rows = _fetchall(conn, _JOB_SELECT + " WHERE j.status = 'queued' ORDER BY j.id")
            return [_job_from_row(row) for row in rows]

        return await self._write(body)

    async def queued_jobs_of(self, user_id: int) -> list[JobRecord]:
        rows = await self._read(_JOB_SELECT + " WHERE j.user_id = ? AND j.status = 'queued' ORDER BY j.id", (user_id,))
        return [_job_from_row(row) for row in rows]

    async def set_delivery(
        self,
        job_id: int,
        *,
        message_id: int | _Unset | None = UNSET,
        interaction_token: str | _Unset | None = UNSET,
        token_created_at: float | _Unset | None = UNSET,
    ) -> None:
        """Record how to deliver a job's result later. Arguments left out are kept; ``None``
        clears. A token given without ``token_created_at`` is taken to be created now."""

        def body(conn: sqlite3.Connection, now: float) -> None:
            _require_job(conn, job_id)
            assignments: dict[str, Any] = {}
            if not isinstance(message_id, _Unset):
                assignments["message_id"] = message_id
            if not isinstance(interaction_token, _Unset):
                assignments["interaction_token"] = interaction_token
                if isinstance(token_created_at, _Unset):
                    assignments["token_created_at"] = None if interaction_token is None else now
            if not isinstance(token_created_at, _Unset):
                assignments["token_created_at"] = token_created_at
            if not assignments:
                return
            sets = ", ".join(f"{column} = :{column}" for column in assignments)
            conn.execute(f"UPDATE jobs SET {sets} WHERE id = :id", {**assignments, "id": job_id})

        await self._write(body)

    # ------------------------------------------------------------------ delivery of results

    async def pending_deliveries(self) -> list[JobRecord]:
        """Finished jobs whose result no Discord message holds yet, oldest first."""
        rows = await self._read(_JOB_SELECT + " WHERE j.delivery = 'pending' ORDER BY j.id")
        return [_job_from_row(row) for row in rows]

    async def mark_delivered(self, job_id: int, message_id: int | None) -> bool:
        """``pending`` -> ``delivered``; False (nothing changed) if it was not pending."""

        def body(conn: sqlite3.Connection, now: float) -> bool:
            cursor = conn.execute(
                "UPDATE jobs SET delivery = 'delivered', result_message_id = ? WHERE id = ? AND delivery = 'pending'",
                (message_id, job_id),
            )
            if cursor.rowcount:
                return True
            _require_job(conn, job_id)
            return False

        return await self._write(body)

    async def record_delivery_failure(self, job_id: int) -> JobRecord:
        """Count one failed try to post a pending result; returns the job as it now stands."""

        def body(conn: sqlite3.Connection, now: float) -> JobRecord:
            _require_job(conn, job_id)
            conn.execute(
                "UPDATE jobs SET delivery_attempts = delivery_attempts + 1 WHERE id = ? AND delivery = 'pending'",
                (job_id,),
            )
            return _fetch_job(conn, job_id)

        return await self._write(body)

    async def abandon_delivery(self, job_id: int, reason: str) -> int:
        """``pending`` -> ``abandoned``, refunding what the job still costs, in one transaction.

        Returns the credits given back; 0 (and nothing changed) if it was not pending.
        """

        def body(conn: sqlite3.Connection, now: float) -> int:
            cursor = conn.execute(
                "UPDATE jobs SET delivery = 'abandoned' WHERE id = ? AND delivery = 'pending'", (job_id,)
            )
            if not cursor.rowcount:
                _require_job(conn, job_id)
                return 0
            return _refund(conn, job_id, None, reason, now)

        return await self._write(body)

    async def expire_interaction_tokens(self) -> int:
        """Forget interaction tokens older than their 15-minute life; returns how many.

        A dead token is useless for delivery and is still a credential, so it
        is not kept. ``open`` calls this; the bot should also call it periodically.
        """

        def body(conn: sqlite3.Connection, now: float) -> int:
            cursor = conn.execute(
                "UPDATE jobs SET interaction_token = NULL, token_created_at = NULL "
                "WHERE interaction_token IS NOT NULL "
                "AND (token_created_at IS NULL OR token_created_at < ?)",
                (now - INTERACTION_TOKEN_LIFETIME_S,),
            )
            return cursor.rowcount

        return await self._write(body)


# ---------------------------------------------------------------------- helpers


def _require_job(conn: sqlite3.Connection, job_id: int) -> None:
    rows = _fetchall(conn, "SELECT 1 FROM jobs WHERE id = ?", (job_id,))
    if not rows:
        raise UnknownJob(job_id)


def _fetch_job(conn: sqlite3.Connection, job_id: int) -> JobRecord:
    rows = _fetchall(conn, _JOB_SELECT + " WHERE j.id = ?", (job_id,))
    if not rows:
        raise UnknownJob(job_id)
    return _job_from_row(rows[0])


def _job_from_row(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row["id"],
        kind=row["kind"],
        guild_id=row["guild_id"],
        channel_id=row["channel_id"],
        user_id=row["user_id"],
        prompt=row["prompt"],
        negative_prompt=row["negative_prompt"],
        model=row["model"],
        width=row["width"],
        height=row["height"],
        steps=row["steps"],
        guidance=row["guidance"],
        strength=row["strength"],
        seeds=tuple(json.loads(row["seeds"])),
        cost=row["cost"],
        scheduler=row["scheduler"],
        nsfw_allowed=bool(row["nsfw_allowed"]),
        parent_job_id=row["parent_job_id"],
        parent_image=row["parent_image"],
        status=row["status"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        image_paths=tuple(json.loads(row["image_paths"])),
        withheld=tuple(json.loads(row["withheld"])),
        timings=json.loads(row["timings"]),
        error=row["error"],
        message_id=row["message_id"],
        interaction_token=row["interaction_token"],
        token_created_at=row["token_created_at"],
        charged=int(row["charged"]),
        refunded=int(row["refunded"]),
        delivery=row["delivery"],
        delivery_attempts=row["delivery_attempts"],
        delivery_started_at=row["delivery_started_at"],
        result_message_id=row["result_message_id"],
    )


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

"""The one owner of Latentcord's SQLite file.

Everything that must survive a restart goes through ``Store``: guild settings
and their audit log, filter terms, quota overrides, the quota ledger and jobs.
Callers get frozen value objects (``db.records``), never rows or SQL.

Three rules shape the code below:

* Every write runs in one ``BEGIN IMMEDIATE`` transaction. Taking SQLite's write
  lock at the start (instead of on the first write) is what makes
  check-then-charge in ``admit_job`` safe across processes and connections.
* One thread owns the connection (``db.connection``) and runs a whole read or
  transaction per call, in the order they were asked for, so coroutines never
  interleave inside a transaction and each costs the event loop one thread hop.
* A write, once started, runs to its end even when the awaiting task is
  cancelled (it is shielded), so a cancelled Discord interaction can never
  leave a transaction open or a job charged but not recorded.

Quotas are kept per (guild, user). Direct messages have no guild, so their
ledger rows and overrides use guild id ``0`` (``DM_GUILD_ID``); jobs keep
``guild_id=None`` for DMs.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from db.connection import ConnectionThread
from db.errors import QuotaExhausted, StoreError, StoreInputError, UnknownJob
from db.records import (
    DM_GUILD_ID,
    INTERACTION_TOKEN_LIFETIME_S,
    MAX_CREDITS,
    MAX_FILTER_TERM_LENGTH,
    NSFW_MODES,
    AuditAction,
    AuditEntry,
    GuildSettings,
    JobRecord,
    JobStatus,
    NewJob,
    QuotaOverride,
    QuotaRule,
    Usage,
)
from db.schema import apply_migrations, latest_version, load_migrations, read_user_version

T = TypeVar("T")

#: How long a connection waits for another one's write lock before giving up.
#: Admissions hold the lock for a millisecond or two, so this is only reached
#: when something is badly wrong (a stuck process holding the file).
BUSY_TIMEOUT_MS: Final = 15_000

DAY_S: Final = 86_400.0


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


class Store:
    """Typed access to the database; create it with ``await Store.open(path)``."""

    def __init__(self, conn: ConnectionThread, path: Path, clock: Callable[[], float]) -> None:
        self._conn = conn
        self._path = path
        self._clock = clock
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._closed = False
        # Every admission reads its guild's settings and filter terms; moderators change them
        # rarely, and only through this object, so they are kept here and dropped on each change.
        self._settings_cache: dict[int, GuildSettings] = {}
        self._terms_cache: dict[int, tuple[str, ...]] = {}
        self._guild_generation: dict[int, int] = {}

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

    # ------------------------------------------------------------------ plumbing

    async def _run(self, function: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``function`` in the connection's thread: reads, and whole transactions."""
        if self._closed:
            raise RuntimeError("The store is closed.")
        return await self._conn.run(function)

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
        return await asyncio.shield(task)

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return await self._run(lambda conn: _fetchall(conn, sql, params))

    # ------------------------------------------------------------------ guild settings

    async def guild_settings(self, guild_id: int) -> GuildSettings:
        cached = self._settings_cache.get(guild_id)
        if cached is not None:
            return cached
        generation = self._guild_generation.get(guild_id, 0)
        rows = await self._read("SELECT * FROM guild_settings WHERE guild_id = ?", (guild_id,))
        settings = _settings_from_row(guild_id, rows[0] if rows else None)
        if self._guild_generation.get(guild_id, 0) == generation:  # no change landed while reading
            self._settings_cache[guild_id] = settings
        return settings

    def _guild_changed(self, guild_id: int) -> None:
        self._guild_generation[guild_id] = self._guild_generation.get(guild_id, 0) + 1
        self._settings_cache.pop(guild_id, None)
        self._terms_cache.pop(guild_id, None)

    async def set_nsfw_mode(self, guild_id: int, mode: str, *, actor_id: int) -> AuditEntry:
        """Choose ``block`` or ``age-restricted`` for a guild (a ``NsfwMode`` works too)."""
        mode = str(mode)
        if mode not in NSFW_MODES:
            raise StoreInputError(f"`{mode}` is not an NSFW mode; choose `block` or `age-restricted`.")

        def body(conn: sqlite3.Connection, now: float) -> AuditEntry:
            before = _current_settings(conn, guild_id)
            _upsert_setting(conn, guild_id, "nsfw_mode", mode, now)
            return _audit(conn, guild_id, actor_id, AuditAction.NSFW_MODE, None, before.nsfw_mode, mode, now)

        return await self._write(body, guild_id=guild_id)

    async def set_guild_daily_credits(self, guild_id: int, credits: int | None, *, actor_id: int) -> AuditEntry:
        """Set the guild's default daily credits; ``None`` goes back to the bot-wide default."""
        if credits is not None:
            _check_credits(credits)

        def body(conn: sqlite3.Connection, now: float) -> AuditEntry:
            before = _current_settings(conn, guild_id)
            _upsert_setting(conn, guild_id, "daily_credits", credits, now)
            return _audit(
                conn,
                guild_id,
                actor_id,
                AuditAction.DAILY_CREDITS,
                None,
                _text(before.daily_credits),
                _text(credits),
                now,
            )

        return await self._write(body, guild_id=guild_id)

    async def set_log_channel(self, guild_id: int, channel_id: int | None, *, actor_id: int) -> AuditEntry:
        def body(conn: sqlite3.Connection, now: float) -> AuditEntry:
            before = _current_settings(conn, guild_id)
            _upsert_setting(conn, guild_id, "log_channel_id", channel_id, now)
            return _audit(
                conn,
                guild_id,
                actor_id,
                AuditAction.LOG_CHANNEL,
                None,
                _text(before.log_channel_id),
                _text(channel_id),
                now,
            )

        return await self._write(body, guild_id=guild_id)

    # ------------------------------------------------------------------ filter terms

    async def add_filter_term(self, guild_id: int, term: str, *, actor_id: int) -> AuditEntry:
        """Add a term to the guild's list. The caller normalises it first (``bot.content_filter``);
        the store cannot, because ``db`` does not import ``bot``."""
        _check_term(term)

        def body(conn: sqlite3.Connection, now: float) -> AuditEntry:
            if _term_exists(conn, guild_id, term):
                raise StoreInputError(f"`{term}` is already on this server's filter list.")
            conn.execute(
                "INSERT INTO filter_terms (guild_id, term, added_by, added_at) VALUES (?, ?, ?, ?)",
                (guild_id, term, actor_id, now),
            )
            return _audit(conn, guild_id, actor_id, AuditAction.FILTER_TERM_ADDED, None, None, term, now)

        return await self._write(body, guild_id=guild_id)

    async def remove_filter_term(self, guild_id: int, term: str, *, actor_id: int) -> AuditEntry:
        _check_term(term)

        def body(conn: sqlite3.Connection, now: float) -> AuditEntry:
            if not _term_exists(conn, guild_id, term):
                raise StoreInputError(f"`{term}` is not on this server's filter list.")
            conn.execute("DELETE FROM filter_terms WHERE guild_id = ? AND term = ?", (guild_id, term))
            return _audit(conn, guild_id, actor_id, AuditAction.FILTER_TERM_REMOVED, None, term, None, now)

        return await self._write(body, guild_id=guild_id)

    async def filter_terms(self, guild_id: int) -> list[str]:
        cached = self._terms_cache.get(guild_id)
        if cached is None:
            generation = self._guild_generation.get(guild_id, 0)
            rows = await self._read("SELECT term FROM filter_terms WHERE guild_id = ? ORDER BY term", (guild_id,))
            cached = tuple(row["term"] for row in rows)
            if self._guild_generation.get(guild_id, 0) == generation:
                self._terms_cache[guild_id] = cached
        return list(cached)

    async def audit_log(self, guild_id: int, limit: int = 50) -> list[AuditEntry]:
        """The guild's most recent changes, newest first."""
        if not 1 <= limit <= 1000:
            raise ValueError("The audit log limit must be from 1 to 1000.")
        rows = await self._read(
            "SELECT * FROM audit_log WHERE guild_id = ? ORDER BY id DESC LIMIT ?", (guild_id, limit)
        )
        return [_audit_from_row(row) for row in rows]

    # ------------------------------------------------------------------ quotas

    async def set_quota_override(
        self,
        guild_id: int,
        *,
        user_id: int | None = None,
        role_id: int | None = None,
        credits: int,
        actor_id: int,
    ) -> AuditEntry:
        """Give one user or one role its own daily credits in a guild, replacing any earlier value."""
        column, subject_id, target = _override_subject(user_id, role_id)
        _check_credits(credits)

        def body(conn: sqlite3.Connection, now: float) -> AuditEntry:
            before = _override_credits(conn, guild_id, column, subject_id)
            if before is None:
                conn.execute(
                    f"INSERT INTO quota_overrides (guild_id, {column}, credits, set_by, set_at) VALUES (?, ?, ?, ?, ?)",
                    (guild_id, subject_id, credits, actor_id, now),
                )
            else:
                conn.execute(
                    f"UPDATE quota_overrides SET credits = ?, set_by = ?, set_at = ? "
                    f"WHERE guild_id = ? AND {column} = ?",
                    (credits, actor_id, now, guild_id, subject_id),
                )
            return _audit(
                conn,
                guild_id,
                actor_id,
                AuditAction.QUOTA_OVERRIDE_SET,
                target,
                _text(before),
                _text(credits),
                now,
            )

        return await self._write(body)

    async def clear_quota_override(
        self, guild_id: int, *, user_id: int | None = None, role_id: int | None = None, actor_id: int
    ) -> AuditEntry:
        column, subject_id, target = _override_subject(user_id, role_id)

        def body(conn: sqlite3.Connection, now: float) -> AuditEntry:
            before = _override_credits(conn, guild_id, column, subject_id)
            if before is None:
                who = "user" if column == "user_id" else "role"
                raise StoreInputError(f"That {who} has no quota override on this server.")
            conn.execute(f"DELETE FROM quota_overrides WHERE guild_id = ? AND {column} = ?", (guild_id, subject_id))
            return _audit(
                conn, guild_id, actor_id, AuditAction.QUOTA_OVERRIDE_CLEARED, target, _text(before), None, now
            )

        return await self._write(body)

    async def quota_overrides(self, guild_id: int) -> list[QuotaOverride]:
        rows = await self._read("SELECT * FROM quota_overrides WHERE guild_id = ? ORDER BY id", (guild_id,))
        return [
            QuotaOverride(
                guild_id=row["guild_id"],
                user_id=row["user_id"],
                role_id=row["role_id"],
                credits=row["credits"],
                set_by=row["set_by"],
                set_at=row["set_at"],
            )
            for row in rows
        ]

    async def quota_limit(self, guild_id: int | None, user_id: int, role_ids: Iterable[int], default: int) -> int:
        """A user's daily credits: their own override, else the most generous of their roles'
        overrides, else the guild's daily credits, else ``default`` (the bot-wide setting)."""
        rule = QuotaRule(tuple(role_ids), default)
        return await self._run(lambda conn: _quota_limit(conn, _ledger_guild(guild_id), user_id, rule))

    async def usage(self, guild_id: int | None, user_id: int, *, window_s: float = DAY_S) -> Usage:
        _check_window(window_s)
        now = self._clock()
        return await self._run(lambda conn: _window_usage(conn, _ledger_guild(guild_id), user_id, now, window_s))

    async def reset_usage(
        self, guild_id: int | None, user_id: int, *, actor_id: int, window_s: float = DAY_S
    ) -> AuditEntry:
        """Give a user their whole limit back now.

        The ledger is never edited: each charge still counted gets a ``reset``
        row that compensates what is left of it, so the history still adds up.
        """
        _check_window(window_s)
        guild = _ledger_guild(guild_id)

        def body(conn: sqlite3.Connection, now: float) -> AuditEntry:
            charges = _window_charges(conn, guild, user_id, now, window_s)
            used = sum(charge.net for charge in charges)
            for charge in charges:
                if charge.net > 0:
                    conn.execute(
                        "INSERT INTO ledger (guild_id, user_id, kind, credits, job_id, charge_id, at, "
                        "recorded_at, reason, actor_id) VALUES (?, ?, 'reset', ?, ?, ?, ?, ?, ?, ?)",
                        (
                            guild,
                            user_id,
                            -charge.net,
                            charge.job_id,
                            charge.id,
                            charge.at,
                            now,
                            "reset by a moderator",
                            actor_id,
                        ),
                    )
            return _audit(conn, guild, actor_id, AuditAction.USAGE_RESET, f"user:{user_id}", str(used), "0", now)

        return await self._write(body)

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


@dataclass(frozen=True, slots=True)
class _WindowCharge:
    """One charge still inside the window, with what is left of it after refunds."""

    id: int
    job_id: int | None
    at: float
    net: int


def _window_charges(
    conn: sqlite3.Connection, guild_id: int, user_id: int, now: float, window_s: float
) -> list[_WindowCharge]:
    """Charges whose time is inside ``(now - window_s, now]``, oldest first, net of compensation.

    Refunds and resets carry their charge's ``at``, so one range query finds a
    charge together with everything that compensated it.
    """
    rows = _fetchall(
        conn,
        "SELECT COALESCE(charge_id, id) AS charge, MIN(job_id) AS job_id, MIN(at) AS at, "
        "       SUM(credits) AS net "
        "FROM ledger WHERE guild_id = ? AND user_id = ? AND at > ? "
        "GROUP BY COALESCE(charge_id, id) ORDER BY MIN(at), COALESCE(charge_id, id)",
        (guild_id, user_id, now - window_s),
    )
    return [_WindowCharge(row["charge"], row["job_id"], row["at"], int(row["net"])) for row in rows]


def _window_usage(conn: sqlite3.Connection, guild_id: int, user_id: int, now: float, window_s: float) -> Usage:
    charges = [charge for charge in _window_charges(conn, guild_id, user_id, now, window_s) if charge.net > 0]
    used = sum(charge.net for charge in charges)
    if not charges:
        return Usage(used=0, next_free_at=None, next_free_credits=0)
    oldest = charges[0].at
    freed = sum(charge.net for charge in charges if charge.at == oldest)
    return Usage(used=used, next_free_at=oldest + window_s, next_free_credits=freed)


def _quota_limit(conn: sqlite3.Connection, guild: int, user_id: int, rule: QuotaRule) -> int:
    rows = _fetchall(
        conn,
        "SELECT user_id, role_id, credits FROM quota_overrides "
        "WHERE guild_id = ? AND (user_id = ? OR role_id IS NOT NULL)",
        (guild, user_id),
    )
    roles = set(rule.role_ids)
    role_limits = []
    for row in rows:
        if row["user_id"] == user_id:
            return int(row["credits"])
        if row["role_id"] in roles:
            role_limits.append(int(row["credits"]))
    if role_limits:
        return max(role_limits)
    settings = _current_settings(conn, guild)
    if settings.daily_credits is not None:
        return settings.daily_credits
    return rule.default


def _current_settings(conn: sqlite3.Connection, guild_id: int) -> GuildSettings:
    rows = _fetchall(conn, "SELECT * FROM guild_settings WHERE guild_id = ?", (guild_id,))
    return _settings_from_row(guild_id, rows[0] if rows else None)


_SETTING_COLUMNS = frozenset({"nsfw_mode", "daily_credits", "log_channel_id"})


def _upsert_setting(conn: sqlite3.Connection, guild_id: int, column: str, value: Any, now: float) -> None:
    assert column in _SETTING_COLUMNS  # column names cannot be parameters; only these three are ever used
    conn.execute(
        f"INSERT INTO guild_settings (guild_id, {column}, updated_at) VALUES (?, ?, ?) "
        f"ON CONFLICT (guild_id) DO UPDATE SET {column} = excluded.{column}, updated_at = excluded.updated_at",
        (guild_id, value, now),
    )


def _audit(
    conn: sqlite3.Connection,
    guild_id: int,
    actor_id: int,
    action: AuditAction,
    target: str | None,
    before: str | None,
    after: str | None,
    now: float,
) -> AuditEntry:
    cursor = conn.execute(
        "INSERT INTO audit_log (guild_id, actor_id, action, target, before, after, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (guild_id, actor_id, str(action), target, before, after, now),
    )
    assert cursor.lastrowid is not None
    return AuditEntry(
        id=cursor.lastrowid,
        guild_id=guild_id,
        actor_id=actor_id,
        action=str(action),
        target=target,
        before=before,
        after=after,
        at=now,
    )


def _term_exists(conn: sqlite3.Connection, guild_id: int, term: str) -> bool:
    rows = _fetchall(conn, "SELECT 1 FROM filter_terms WHERE guild_id = ? AND term = ?", (guild_id, term))
    return bool(rows)


def _override_credits(conn: sqlite3.Connection, guild_id: int, column: str, subject_id: int) -> int | None:
    rows = _fetchall(
        conn, f"SELECT credits FROM quota_overrides WHERE guild_id = ? AND {column} = ?", (guild_id, subject_id)
    )
    return int(rows[0]["credits"]) if rows else None


def _require_job(conn: sqlite3.Connection, job_id: int) -> None:
    rows = _fetchall(conn, "SELECT 1 FROM jobs WHERE id = ?", (job_id,))
    if not rows:
        raise UnknownJob(job_id)


def _fetch_job(conn: sqlite3.Connection, job_id: int) -> JobRecord:
    rows = _fetchall(conn, _JOB_SELECT + " WHERE j.id = ?", (job_id,))
    if not rows:
        raise UnknownJob(job_id)
    return _job_from_row(rows[0])


def _settings_from_row(guild_id: int, row: sqlite3.Row | None) -> GuildSettings:
    if row is None:
        return GuildSettings(guild_id=guild_id)
    return GuildSettings(
        guild_id=guild_id,
        nsfw_mode=row["nsfw_mode"],
        daily_credits=row["daily_credits"],
        log_channel_id=row["log_channel_id"],
    )


def _audit_from_row(row: sqlite3.Row) -> AuditEntry:
    return AuditEntry(
        id=row["id"],
        guild_id=row["guild_id"],
        actor_id=row["actor_id"],
        action=row["action"],
        target=row["target"],
        before=row["before"],
        after=row["after"],
        at=row["at"],
    )


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


def _refund(conn: sqlite3.Connection, job_id: int, credits: int | None, reason: str, now: float) -> int:
    """Give back ``credits`` of a job's charge (``None``: all that is left of it), never more than it."""
    rows = _fetchall(
        conn,
        "SELECT c.id, c.guild_id, c.user_id, c.credits, c.at, "
        "       COALESCE((SELECT -SUM(r.credits) FROM ledger AS r WHERE r.charge_id = c.id), 0) "
        "           AS compensated "
        "FROM ledger AS c WHERE c.job_id = ? AND c.kind = 'charge'",
        (job_id,),
    )
    if not rows:
        return 0
    charge = rows[0]
    left = int(charge["credits"]) - int(charge["compensated"])
    amount = left if credits is None else min(credits, left)
    if amount <= 0:
        return 0
    conn.execute(
        "INSERT INTO ledger (guild_id, user_id, kind, credits, job_id, charge_id, at, recorded_at, "
        "reason) VALUES (?, ?, 'refund', ?, ?, ?, ?, ?, ?)",
        (charge["guild_id"], charge["user_id"], -amount, job_id, charge["id"], charge["at"], now, reason),
    )
    return amount


def _fetchall(conn: sqlite3.Connection, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[sqlite3.Row]:
    return conn.execute(sql, params).fetchall()


def _ledger_guild(guild_id: int | None) -> int:
    return DM_GUILD_ID if guild_id is None else guild_id


def _text(value: int | None) -> str | None:
    return None if value is None else str(value)


def _check_credits(credits: int) -> None:
    if isinstance(credits, bool) or not isinstance(credits, int) or not 0 <= credits <= MAX_CREDITS:
        raise StoreInputError(f"Credits must be a whole number from 0 to {MAX_CREDITS:,}.")


def _check_term(term: str) -> None:
    if not isinstance(term, str) or not term.strip():
        raise StoreInputError("A filter term cannot be empty.")
    if len(term) > MAX_FILTER_TERM_LENGTH:
        raise StoreInputError(f"A filter term can be at most {MAX_FILTER_TERM_LENGTH} characters long.")


def _check_window(window_s: float) -> None:
    if not window_s > 0:
        raise ValueError("A quota window must be longer than zero seconds.")


def _override_subject(user_id: int | None, role_id: int | None) -> tuple[str, int, str]:
    if (user_id is None) == (role_id is None):
        raise StoreInputError("A quota override is for exactly one user or one role.")
    if user_id is not None:
        return "user_id", user_id, f"user:{user_id}"
    assert role_id is not None
    return "role_id", role_id, f"role:{role_id}"


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

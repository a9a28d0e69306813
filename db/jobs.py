"""Jobs in SQLite: admission (check, charge and record in one transaction), status, refunds and delivery.

A job's row holds its recipe (the application's dataclass of everything that determines its
images, one column per field, mapped by ``db.rows``) next to what the store keeps of its life:
who asked and where, its status, its charge and refunds, and where its result went.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, Final, Generic

from db.access import DAY_S, StoreAccess, _fetchall, _ledger_guild
from db.errors import QuotaExhausted, UnknownJob
from db.guilds import _audit
from db.quotas import _check_window, _quota_limit, _refund, _window_usage
from db.records import (
    DELETED_PROMPT,
    INTERACTION_TOKEN_LIFETIME_S,
    AuditAction,
    JobRecord,
    JobStatus,
    MemberDataDeleted,
    NewJob,
    QuotaRule,
    R,
)
from db.rows import SqlValue, from_columns, to_columns


class _Unset:
    """Marks an argument the caller left out, so that ``None`` can mean "clear it"."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


JOB_SELECT = """
SELECT j.*,
       COALESCE((SELECT l.credits FROM ledger AS l WHERE l.job_id = j.id AND l.kind = 'charge'), 0)
           AS charged,
       COALESCE((SELECT -SUM(l.credits) FROM ledger AS l WHERE l.job_id = j.id AND l.kind <> 'charge'), 0)
           AS refunded
FROM jobs AS j
"""


# A job may still start from its member's picture (``source``), or be guided by its references, while it waits or
# runs, and once done until its result is deleted (its re-roll button starts from the same picture). A failed or
# cancelled job has no buttons.
_MAY_USE_SOURCE = "(j.status IN ('queued', 'running') OR (j.status = 'done' AND j.result_deleted_at IS NULL))"


class JobQueries(StoreAccess, Generic[R]):
    """The jobs part of ``Store``; ``_recipe_type`` is the dataclass a job's recipe columns are read into."""

    _recipe_type: type[R]

    async def admit_job(
        self, job: NewJob[R], *, cost: int | None = None, limit: int | QuotaRule | None, window_s: float = DAY_S
    ) -> JobRecord[R]:
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

        def body(conn: sqlite3.Connection, now: float) -> JobRecord[R]:
            # 1. The user's limit and what is already counted in the window.
            if limit is not None:
                credits = limit if isinstance(limit, int) else _quota_limit(conn, guild, job.user_id, limit)
                window = _window_usage(conn, guild, job.user_id, now, window_s)
                if window.used + cost > credits:
                    raise QuotaExhausted(used=window.used, limit=credits, cost=cost, next_free_at=window.next_free_at)
            # 2. The job row: the recipe's columns, then the admission's own.
            values: dict[str, SqlValue] = {
                **to_columns(job.recipe),
                **to_columns(job, without=("recipe",)),
                "status": JobStatus.QUEUED.value,
                "created_at": now,
            }
            names = ", ".join(values)
            marks = ", ".join(f":{name}" for name in values)
            cursor = conn.execute(f"INSERT INTO jobs ({names}) VALUES ({marks})", values)
            job_id = cursor.lastrowid
            assert job_id is not None
            # 3. Its one and only charge.
            conn.execute(
                "INSERT INTO ledger (guild_id, user_id, kind, credits, job_id, at, recorded_at, reason) "
                "VALUES (?, ?, 'charge', ?, ?, ?, ?, ?)",
                (guild, job.user_id, cost, job_id, now, now, f"{values.get('kind', 'image')} job"),
            )
            return self._fetch_job(conn, job_id)

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
        attempt_token: str | None = None,
        texts: Sequence[str] = (),
    ) -> bool:
        """``running`` -> ``done``, with where the images are, which were withheld (indexes into
        the job's images, i.e. its seeds), how long each phase took, and what it wrote (/describe).

        With ``attempt_token``, only if that is still the job's current attempt: a result from an
        attempt given up on (its worker was declared lost) changes nothing and returns False.
        """
        paths = [str(path) for path in image_paths]
        hidden = sorted({int(index) for index in withheld})
        if any(index < 0 for index in hidden):
            raise ValueError(f"Withheld image indexes cannot be negative: {hidden}.")
        return await self._transition(
            job_id,
            "status = 'done', finished_at = :now, image_paths = :paths, withheld = :withheld, timings = :timings, "
            "texts = :texts, delivery = 'pending', delivery_started_at = :now",
            (JobStatus.RUNNING,),
            {
                "token": attempt_token,
                "paths": json.dumps(paths),
                "withheld": json.dumps(hidden),
                "timings": json.dumps({str(key): float(value) for key, value in timings.items()}),
                "texts": json.dumps([str(text) for text in texts]),
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
            current = " AND attempt_token = :token" if values.get("token") is not None else ""
            cursor = conn.execute(
                f"UPDATE jobs SET {assignments} WHERE id = :id AND status IN ({placeholders}){current}", values
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

    async def get_job(self, job_id: int) -> JobRecord[R] | None:
        rows = await self._read(JOB_SELECT + " WHERE j.id = ?", (job_id,))
        return self._job_from_row(rows[0]) if rows else None

    async def unfinished_jobs(self) -> list[JobRecord[R]]:
        """Jobs ``queued`` or ``running``, oldest first (the order they were admitted in)."""
        rows = await self._read(JOB_SELECT + " WHERE j.status IN ('queued', 'running') ORDER BY j.id")
        return [self._job_from_row(row) for row in rows]

    async def start_attempts(self, job_ids: Sequence[int], worker_id: str) -> dict[int, tuple[int, str]]:
        """Hand jobs to ``worker_id``: each one still waiting (or running, after its worker was lost) is
        marked ``running`` with its attempt number one higher and a fresh attempt token, all in one
        transaction. Returns ``{job id: (attempt, token)}``; cancelled and finished jobs are left out."""

        def body(conn: sqlite3.Connection, now: float) -> dict[int, tuple[int, str]]:
            started: dict[int, tuple[int, str]] = {}
            for job_id in job_ids:
                row = conn.execute(
                    "UPDATE jobs SET status = 'running', started_at = ?, attempt = attempt + 1, "
                    "attempt_token = ?, worker_id = ? WHERE id = ? AND status IN ('queued', 'running') "
                    "RETURNING attempt, attempt_token",
                    (now, secrets.token_hex(16), worker_id, job_id),
                ).fetchone()
                if row is not None:
                    started[job_id] = (int(row[0]), str(row[1]))
            return started

        return await self._write(body)

    async def requeue_attempt(self, job_id: int) -> bool:
        """A running job whose worker was lost waits again; its attempt's result will be refused."""

        def body(conn: sqlite3.Connection, now: float) -> bool:
            cursor = conn.execute(
                "UPDATE jobs SET status = 'queued', started_at = NULL, attempt_token = NULL "
                "WHERE id = ? AND status = 'running'",
                (job_id,),
            )
            return cursor.rowcount > 0

        return await self._write(body)

    async def requeue_unfinished(self) -> list[JobRecord[R]]:
        """After a crash: put ``running`` jobs back to ``queued`` and return every unfinished job
        in admission order. Nothing is charged: a job's charge was written once, at admission."""

        def body(conn: sqlite3.Connection, now: float) -> list[JobRecord[R]]:
            conn.execute(
                "UPDATE jobs SET status = 'queued', started_at = NULL, attempt_token = NULL WHERE status = 'running'"
            )
            rows = _fetchall(conn, JOB_SELECT + " WHERE j.status = 'queued' ORDER BY j.id")
            return [self._job_from_row(row) for row in rows]

        return await self._write(body)

    async def queued_jobs_of(self, user_id: int) -> list[JobRecord[R]]:
        rows = await self._read(JOB_SELECT + " WHERE j.user_id = ? AND j.status = 'queued' ORDER BY j.id", (user_id,))
        return [self._job_from_row(row) for row in rows]

    async def jobs_of_member(self, user_id: int) -> list[JobRecord[R]]:
        """Every job ``user_id`` asked for, oldest first, their deleted data's included."""
        rows = await self._read(JOB_SELECT + " WHERE j.user_id = ? ORDER BY j.id", (user_id,))
        return [self._job_from_row(row) for row in rows]

    async def forget_member(self, user_id: int) -> MemberDataDeleted:
        """A member's data deleted, in one transaction: their jobs' prompts and what else they wrote cleared,
        the rows kept (the ledger and the audit log name them) and marked so no gallery shows them; their
        preferences and stars deleted; each guild they had jobs in audited that it happened, not what."""

        def body(conn: sqlite3.Connection, now: float) -> MemberDataDeleted:
            guilds = _fetchall(
                conn,
                "SELECT DISTINCT guild_id FROM jobs WHERE user_id = ? AND guild_id IS NOT NULL ORDER BY guild_id",
                (user_id,),
            )
            cursor = conn.execute(
                "UPDATE jobs SET prompt = ?, negative_prompt = '', texts = '[]', error = NULL, member_name = '', "
                "interaction_token = NULL, token_created_at = NULL, source = NULL, reference_images = '[]', "
                "result_deleted_at = COALESCE(result_deleted_at, ?), "
                "deleted_by_member_at = COALESCE(deleted_by_member_at, ?) WHERE user_id = ?",
                (DELETED_PROMPT, now, now, user_id),
            )
            conn.execute("DELETE FROM member_preferences WHERE user_id = ?", (user_id,))
            conn.execute("DELETE FROM starboard_stars WHERE user_id = ?", (user_id,))
            conn.execute("DELETE FROM web_sessions WHERE user_id = ?", (user_id,))
            guild_ids = tuple(int(row["guild_id"]) for row in guilds)
            for guild_id in guild_ids:
                _audit(conn, guild_id, user_id, AuditAction.MEMBER_DATA_DELETED, f"user:{user_id}", None, None, now)
            return MemberDataDeleted(cursor.rowcount, guild_ids)

        return await self._write(body)

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

    async def pending_deliveries(self) -> list[JobRecord[R]]:
        """Finished jobs whose result no Discord message holds yet, oldest first."""
        rows = await self._read(JOB_SELECT + " WHERE j.delivery = 'pending' ORDER BY j.id")
        return [self._job_from_row(row) for row in rows]

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

    async def record_delivery_failure(self, job_id: int) -> JobRecord[R]:
        """Count one failed try to post a pending result; returns the job as it now stands."""

        def body(conn: sqlite3.Connection, now: float) -> JobRecord[R]:
            _require_job(conn, job_id)
            conn.execute(
                "UPDATE jobs SET delivery_attempts = delivery_attempts + 1 WHERE id = ? AND delivery = 'pending'",
                (job_id,),
            )
            return self._fetch_job(conn, job_id)

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

    # ------------------------------------------------------------------ members' pictures

    async def mark_result_deleted(self, job_id: int, *, message_id: int) -> bool:
        """The member or a moderator deleted a finished job's result, the message ``message_id``.

        A copy of the result posted again (``/show``) is not the result: deleting it changes nothing.
        False when nothing changed (a copy, a job not done, a result already deleted).
        """

        def body(conn: sqlite3.Connection, now: float) -> bool:
            cursor = conn.execute(
                "UPDATE jobs SET result_deleted_at = ? WHERE id = ? AND status = 'done' AND result_deleted_at IS NULL "
                "AND (result_message_id IS NULL OR result_message_id = ?)",
                (now, job_id, message_id),
            )
            if cursor.rowcount:
                return True
            _require_job(conn, job_id)
            return False

        return await self._write(body)

    async def source_in_use(self, source: str) -> bool:
        """Whether a job may still start from, or be guided by, the picture ``source`` (see ``_MAY_USE_SOURCE``),
        or a moodboard holds it."""
        rows = await self._read(
            f"SELECT 1 FROM jobs AS j WHERE j.source = ? AND {_MAY_USE_SOURCE} "
            f"UNION ALL SELECT 1 FROM jobs AS j, json_each(j.reference_images) AS r "
            f"WHERE r.value = ? AND {_MAY_USE_SOURCE} "
            "UNION ALL SELECT 1 FROM moodboard_images WHERE path = ? LIMIT 1",
            (source, source, source),
        )
        return bool(rows)

    async def sources_in_use(self) -> set[str]:
        """Every picture a job may still start from or be guided by, and every moodboard's."""
        rows = await self._read(
            f"SELECT j.source FROM jobs AS j WHERE j.source IS NOT NULL AND {_MAY_USE_SOURCE} "
            f"UNION SELECT r.value FROM jobs AS j, json_each(j.reference_images) AS r WHERE {_MAY_USE_SOURCE} "
            "UNION SELECT path FROM moodboard_images"
        )
        return {str(row[0]) for row in rows}

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

    def _fetch_job(self, conn: sqlite3.Connection, job_id: int) -> JobRecord[R]:
        rows = _fetchall(conn, JOB_SELECT + " WHERE j.id = ?", (job_id,))
        if not rows:
            raise UnknownJob(job_id)
        return self._job_from_row(rows[0])

    def _job_from_row(self, row: sqlite3.Row) -> JobRecord[R]:
        return job_from_row(self._recipe_type, row)


def job_from_row(recipe_type: type[R], row: sqlite3.Row) -> JobRecord[R]:
    """A row of ``JOB_SELECT`` as the job it records, its recipe read into ``recipe_type``."""
    recipe = from_columns(recipe_type, row)
    return from_columns(JobRecord, row, recipe=recipe)


def _require_job(conn: sqlite3.Connection, job_id: int) -> None:
    rows = _fetchall(conn, "SELECT 1 FROM jobs WHERE id = ?", (job_id,))
    if not rows:
        raise UnknownJob(job_id)

"""What /queue and /stats read: unfinished jobs by guild, a guild's images and favourites, and ⭐ counts.

Reads only, apart from ``change_stars``, which keeps ``result_stars`` (schema 14) current from
reaction events. The value objects are defined here: nothing but the stats service reads them.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from db.access import StoreAccess, _fetchall, _ledger_guild

#: Jobs that make images (a description writes text instead).
_IMAGE_KINDS = "kind <> 'describe'"


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """Unfinished jobs as SQLite has them: on one guild and on the whole bot."""

    guild_waiting: int
    guild_running: int
    all_waiting: int
    all_running: int


@dataclass(frozen=True, slots=True)
class Ranked:
    """A name and how often it was used (or how many credits, or which hour of the day)."""

    name: str
    count: int


@dataclass(frozen=True, slots=True)
class StarredResult:
    job_id: int
    channel_id: int | None
    message_id: int
    stars: int


@dataclass(frozen=True, slots=True)
class BatchTime:
    """How long a finished job's batch took on the GPU, for the wait /queue estimates."""

    model: str
    generation_s: float


@dataclass(frozen=True, slots=True)
class GuildStats:
    images_today: int
    images_week: int
    images_all: int
    models: tuple[Ranked, ...]
    styles: tuple[Ranked, ...]
    loras: tuple[Ranked, ...]
    hours: tuple[Ranked, ...]  # name: the hour of the day in UTC, "00" to "23"; the busiest first
    starred: tuple[StarredResult, ...]
    members: tuple[Ranked, ...]  # name: the member's id; credits charged, less refunds


class StatsQueries(StoreAccess):
    async def queue_counts(self, guild_id: int | None) -> QueueCounts:
        def load(conn: sqlite3.Connection) -> QueueCounts:
            rows = _fetchall(
                conn,
                "SELECT status, guild_id IS ? AS here, COUNT(*) AS n FROM jobs "
                "WHERE status IN ('queued', 'running') GROUP BY status, here",
                (guild_id,),
            )
            counts = {(row["status"], bool(row["here"])): int(row["n"]) for row in rows}

            def count(status: str, *, here_only: bool) -> int:
                return counts.get((status, True), 0) + (0 if here_only else counts.get((status, False), 0))

            return QueueCounts(
                guild_waiting=count("queued", here_only=True),
                guild_running=count("running", here_only=True),
                all_waiting=count("queued", here_only=False),
                all_running=count("running", here_only=False),
            )

        return await self._run(load)

    async def recent_batch_times(self, limit: int) -> list[BatchTime]:
        """The GPU time of the last ``limit`` finished jobs, oldest first."""
        rows = await self._read(
            "SELECT model, json_extract(timings, '$.generation_s') AS seconds FROM jobs "
            "WHERE status = 'done' AND json_extract(timings, '$.generation_s') IS NOT NULL "
            "ORDER BY finished_at DESC, id DESC LIMIT ?",
            (limit,),
        )
        return [BatchTime(row["model"], float(row["seconds"])) for row in reversed(rows)]

    async def guild_stats(self, guild_id: int, *, day_start: float, week_start: float, top: int) -> GuildStats:
        """A guild's images since ``day_start``, ``week_start`` and ever, and its ``top`` favourites of each kind."""

        def load(conn: sqlite3.Connection) -> GuildStats:
            done = f"guild_id = ? AND status = 'done' AND {_IMAGE_KINDS}"
            images = _fetchall(
                conn,
                "SELECT "
                "COALESCE(SUM(CASE WHEN finished_at >= ? THEN json_array_length(image_paths) END), 0) AS today, "
                "COALESCE(SUM(CASE WHEN finished_at >= ? THEN json_array_length(image_paths) END), 0) AS week, "
                f"COALESCE(SUM(json_array_length(image_paths)), 0) AS ever FROM jobs WHERE {done}",
                (day_start, week_start, guild_id),
            )[0]

            def ranked(sql: str, params: tuple[object, ...]) -> tuple[Ranked, ...]:
                return tuple(Ranked(str(row["name"]), int(row["n"])) for row in _fetchall(conn, sql, params))

            models = ranked(
                f"SELECT model AS name, COUNT(*) AS n FROM jobs WHERE {done} "
                "GROUP BY model ORDER BY n DESC, name LIMIT ?",
                (guild_id, top),
            )
            styles = ranked(
                f"SELECT style AS name, COUNT(*) AS n FROM jobs WHERE {done} AND style IS NOT NULL "
                "GROUP BY style ORDER BY n DESC, name LIMIT ?",
                (guild_id, top),
            )
            # A job's LoRAs are "name:weight:sha256" entries of a JSON list; the name is what members know.
            loras = ranked(
                "SELECT substr(entry.value, 1, instr(entry.value, ':') - 1) AS name, COUNT(*) AS n "
                f"FROM jobs, json_each(jobs.loras) AS entry WHERE {done} "
                "GROUP BY name ORDER BY n DESC, name LIMIT ?",
                (guild_id, top),
            )
            hours = ranked(
                "SELECT strftime('%H', created_at, 'unixepoch') AS name, COUNT(*) AS n FROM jobs "
                "WHERE guild_id = ? GROUP BY name ORDER BY n DESC, name LIMIT ?",
                (guild_id, top),
            )
            starred = tuple(
                StarredResult(int(row["id"]), row["channel_id"], int(row["result_message_id"]), int(row["stars"]))
                for row in _fetchall(
                    conn,
                    "SELECT jobs.id, jobs.channel_id, jobs.result_message_id, result_stars.stars "
                    "FROM result_stars JOIN jobs ON jobs.id = result_stars.job_id "
                    "WHERE jobs.guild_id = ? AND result_stars.stars > 0 AND jobs.result_message_id IS NOT NULL "
                    "AND jobs.result_deleted_at IS NULL ORDER BY result_stars.stars DESC, jobs.id LIMIT ?",
                    (guild_id, top),
                )
            )
            members = ranked(
                "SELECT user_id AS name, SUM(credits) AS n FROM ledger WHERE guild_id = ? "
                "GROUP BY user_id HAVING n > 0 ORDER BY n DESC, user_id LIMIT ?",
                (_ledger_guild(guild_id), top),
            )
            return GuildStats(
                images_today=int(images["today"]),
                images_week=int(images["week"]),
                images_all=int(images["ever"]),
                models=models,
                styles=styles,
                loras=loras,
                hours=hours,
                starred=starred,
                members=members,
            )

        return await self._run(load)

    async def change_stars(self, message_id: int, change: int) -> int | None:
        """Add ``change`` (1 or -1) to the ⭐ count of the result ``message_id`` holds; its new count.

        ``None`` when no job's result is that message (a ⭐ on another message).
        """

        def body(conn: sqlite3.Connection, now: float) -> int | None:
            rows = _fetchall(conn, "SELECT id FROM jobs WHERE result_message_id = ?", (message_id,))
            if not rows:
                return None
            job_id = int(rows[0]["id"])
            before = _fetchall(conn, "SELECT stars FROM result_stars WHERE job_id = ?", (job_id,))
            stars = max(0, (int(before[0]["stars"]) if before else 0) + change)
            conn.execute(
                "INSERT INTO result_stars (job_id, stars, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (job_id) DO UPDATE SET stars = excluded.stars, updated_at = excluded.updated_at",
                (job_id, stars, now),
            )
            return stars

        return await self._write(body)

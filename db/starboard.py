"""The starboard: who stars each result (its requester never counted) and which results were reposted.

``StarboardQueries`` is the part of ``Store`` the starboard goes through (schema 15). A star is a row of
``starboard_stars`` per member and result, so the same reaction seen twice counts once; the repost is
claimed in ``starboard_posts`` in the transaction whose star reached the threshold, so a result is
reposted once, whatever is starred, unstarred or restarted after.
"""

from __future__ import annotations

import sqlite3

from db.access import StoreAccess, _fetchall
from db.guilds import _current_settings
from db.records import StarboardClaim


class StarboardQueries(StoreAccess):
    """⭐ counts without the requester, and the once-only claim of each repost."""

    async def starboard_star(
        self, message_id: int, user_id: int, starred: bool, *, default_threshold: int
    ) -> StarboardClaim | None:
        """Record that ``user_id`` stars (or no longer stars) the result ``message_id`` holds.

        A claim when this star brings the result to its guild's threshold (``default_threshold`` where the
        guild set none) and it was never reposted; ``None`` otherwise, and for a message no result is in.
        """

        def body(conn: sqlite3.Connection, now: float) -> StarboardClaim | None:
            # 1. The result, and who asked for it: their own star never counts.
            rows = _fetchall(
                conn,
                "SELECT id, guild_id, user_id, status, result_deleted_at, deleted_by_member_at FROM jobs "
                "WHERE result_message_id = ?",
                (message_id,),
            )
            if not rows or rows[0]["guild_id"] is None or int(rows[0]["user_id"]) == user_id:
                return None
            job = rows[0]
            job_id, guild_id = int(job["id"]), int(job["guild_id"])
            # 2. The star itself, idempotent either way.
            if not starred:
                conn.execute("DELETE FROM starboard_stars WHERE job_id = ? AND user_id = ?", (job_id, user_id))
                return None
            conn.execute("INSERT OR IGNORE INTO starboard_stars (job_id, user_id) VALUES (?, ?)", (job_id, user_id))
            # 3. The threshold, and the claim: only for a result still shown, on a guild with a starboard.
            settings = _current_settings(conn, guild_id)
            if settings.starboard_channel_id is None:
                return None
            if job["status"] != "done" or job["result_deleted_at"] is not None:
                return None
            stars = int(conn.execute("SELECT COUNT(*) FROM starboard_stars WHERE job_id = ?", (job_id,)).fetchone()[0])
            if stars < (settings.starboard_threshold or default_threshold):
                return None
            claimed = conn.execute(
                "INSERT OR IGNORE INTO starboard_posts (job_id, guild_id, channel_id, posted_at) VALUES (?, ?, ?, ?)",
                (job_id, guild_id, settings.starboard_channel_id, now),
            )
            if not claimed.rowcount:
                return None
            return StarboardClaim(job_id, guild_id, settings.starboard_channel_id, stars)

        return await self._write(body)

    async def starboard_posted(self, job_id: int, message_id: int) -> None:
        """The repost of a claimed result is the message ``message_id``."""

        def body(conn: sqlite3.Connection, now: float) -> None:
            conn.execute(
                "UPDATE starboard_posts SET message_id = ?, posted_at = ? WHERE job_id = ?", (message_id, now, job_id)
            )

        await self._write(body)

    async def release_starboard(self, job_id: int) -> None:
        """Give back a claim whose repost could not be sent, so the next star tries again."""

        def body(conn: sqlite3.Connection, now: float) -> None:
            conn.execute("DELETE FROM starboard_posts WHERE job_id = ? AND message_id IS NULL", (job_id,))

        await self._write(body)

    async def starboard_reposts(self, guild_id: int) -> dict[int, int | None]:
        """The results of a guild reposted (or claimed) so far: job id to the repost's message id."""
        rows = await self._read("SELECT job_id, message_id FROM starboard_posts WHERE guild_id = ?", (guild_id,))
        return {int(row["job_id"]): row["message_id"] for row in rows}

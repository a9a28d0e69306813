"""What the web gallery reads (a server's shown results, searched and filtered) and its sign-in sessions.

``GalleryQueries`` is the part of ``Store`` the gallery goes through (schema 16). One predicate,
``_SHOWN``, says which results a gallery may show, and every read here applies it, the image
route's included, so a result hidden in one place is hidden everywhere: a result is shown when it
was delivered to a channel of that server, its message still stands (no Delete, no ❌, not
deleted in Discord), its member has not deleted their data, and it was not made in an
age-restricted channel nor with NSFW allowed. Images the classifier withheld are left out image by
image (``ShownResult.shown``).
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass
from typing import Generic

from db.access import StoreAccess, _fetchall
from db.jobs import JOB_SELECT, job_from_row
from db.records import JobRecord, R

#: The results of guild ``:guild`` a gallery may show (jobs aliased ``j``).
_SHOWN = (
    "j.guild_id = :guild AND j.status = 'done' AND j.delivery = 'delivered' AND j.result_message_id IS NOT NULL "
    "AND j.result_deleted_at IS NULL AND j.deleted_by_member_at IS NULL AND j.age_restricted = 0 "
    "AND j.nsfw_allowed = 0 AND j.kind <> 'describe' "
    "AND json_array_length(j.withheld) < json_array_length(j.seeds)"
)
#: An upscale is shown under the grid it came from while that grid is shown; on its own otherwise (an upscale of
#: an upscale, Upscale (Subtle) or (Creative), is a card of its own).
_CARD = (
    "(j.kind <> 'upscale' OR NOT EXISTS (SELECT 1 FROM jobs AS p WHERE p.id = j.parent_job_id "
    "AND p.kind <> 'upscale' AND " + _SHOWN.replace("j.", "p.") + "))"
)
_WORD = re.compile(r"\w+")
#: Longest search the gallery reads: more words than this are left out.
MAX_SEARCH_WORDS = 12


@dataclass(frozen=True, slots=True)
class ShownResult(Generic[R]):
    """A result a gallery shows: its job, how many ⭐ it has in Discord, and which of its images may be shown."""

    job: JobRecord[R]
    stars: int
    shown: tuple[int, ...]  # the indices (from 0) of its images that were not withheld
    kind: str  # as jobs.kind has it ("imagine", "upscale" ...)
    parent_job_id: int | None  # the grid an upscale came from


@dataclass(frozen=True, slots=True)
class GalleryPage(Generic[R]):
    """A page of a server's gallery: its cards newest first, each grid's shown upscales, and whether more follow."""

    cards: tuple[ShownResult[R], ...]
    upscales: dict[int, tuple[ShownResult[R], ...]]  # by the grid's job id
    has_more: bool


@dataclass(frozen=True, slots=True)
class GalleryMember:
    user_id: int
    name: str  # the display name of their latest shown result ("" when none was known)


@dataclass(frozen=True, slots=True)
class WebSession:
    """A member signed in to the gallery: who, the servers they were in then, and their forms' CSRF token."""

    user_id: int
    user_name: str
    guild_ids: frozenset[int]
    csrf_token: str
    expires_at: float


def search_expression(text: str) -> str | None:
    """The words of ``text`` as an FTS5 query that finds prompts holding all of them (the last may be a prefix).

    Only words reach FTS5, each quoted, so nothing a member types is read as its query syntax.
    """
    words = _WORD.findall(text)[:MAX_SEARCH_WORDS]
    if not words:
        return None
    quoted = [f'"{word}"' for word in words]
    quoted[-1] += "*"
    return " AND ".join(quoted)


class GalleryQueries(StoreAccess, Generic[R]):
    """A server's shown results, and the gallery's sessions; ``_recipe_type`` is what a job's recipe is read into."""

    _recipe_type: type[R]

    async def gallery_page(
        self,
        guild_id: int,
        *,
        search: str | None = None,
        member_id: int | None = None,
        model: str | None = None,
        offset: int = 0,
        limit: int = 12,
    ) -> GalleryPage[R]:
        """Cards ``offset`` to ``offset + limit`` of a guild's gallery, newest first, matching the filters."""
        expression = search_expression(search) if search else None

        def load(conn: sqlite3.Connection) -> GalleryPage[R]:
            params: dict[str, object] = {"guild": guild_id, "limit": limit + 1, "offset": offset}
            where = [_SHOWN, _CARD]
            if expression is not None:
                where.append("j.id IN (SELECT rowid FROM jobs_prompt_search WHERE jobs_prompt_search MATCH :search)")
                params["search"] = expression
            if member_id is not None:
                where.append("j.user_id = :member")
                params["member"] = member_id
            if model is not None:
                where.append("j.model = :model")
                params["model"] = model
            rows = _fetchall(
                conn,
                f"{JOB_SELECT} WHERE {' AND '.join(where)} ORDER BY j.id DESC LIMIT :limit OFFSET :offset",
                params,
            )
            cards = self._shown(conn, rows[:limit])
            upscales: dict[int, list[ShownResult[R]]] = {}
            grids = [card for card in cards if card.kind != "upscale"]
            if grids:
                marks = ", ".join(f":p{n}" for n in range(len(grids)))
                children = _fetchall(
                    conn,
                    f"{JOB_SELECT} WHERE {_SHOWN} AND j.kind = 'upscale' AND j.parent_job_id IN ({marks}) "
                    "ORDER BY j.id",
                    {"guild": guild_id, **{f"p{n}": card.job.id for n, card in enumerate(grids)}},
                )
                for child in self._shown(conn, children):
                    assert child.parent_job_id is not None
                    upscales.setdefault(child.parent_job_id, []).append(child)
            return GalleryPage(
                cards=tuple(cards),
                upscales={parent: tuple(jobs) for parent, jobs in upscales.items()},
                has_more=len(rows) > limit,
            )

        return await self._run(load)

    async def gallery_job(self, guild_id: int, job_id: int) -> ShownResult[R] | None:
        """Job ``job_id`` if guild ``guild_id``'s gallery shows it (as a card or under its grid), else None."""

        def load(conn: sqlite3.Connection) -> ShownResult[R] | None:
            rows = _fetchall(conn, f"{JOB_SELECT} WHERE j.id = :job AND {_SHOWN}", {"guild": guild_id, "job": job_id})
            shown = self._shown(conn, rows)
            return shown[0] if shown else None

        return await self._run(load)

    def _shown(self, conn: sqlite3.Connection, rows: list[sqlite3.Row]) -> list[ShownResult[R]]:
        """The jobs of ``rows`` with their ⭐ counts."""
        jobs = [job_from_row(self._recipe_type, row) for row in rows]
        marks = ", ".join("?" for _ in jobs)
        stars = (
            {
                int(row["job_id"]): int(row["stars"])
                for row in _fetchall(
                    conn, f"SELECT job_id, stars FROM result_stars WHERE job_id IN ({marks})", [job.id for job in jobs]
                )
            }
            if jobs
            else {}
        )
        return [
            ShownResult(job, stars.get(job.id, 0), _shown_images(row), str(row["kind"]), row["parent_job_id"])
            for job, row in zip(jobs, rows, strict=True)
        ]

    async def gallery_members(self, guild_id: int) -> list[GalleryMember]:
        """The members with a shown result in a guild, by the name of their latest one."""
        rows = await self._read(
            f"SELECT j.user_id, j.member_name, MAX(j.id) AS latest FROM jobs AS j WHERE {_SHOWN} "
            "GROUP BY j.user_id ORDER BY j.member_name COLLATE NOCASE, j.user_id",
            {"guild": guild_id},
        )
        return [GalleryMember(int(row["user_id"]), str(row["member_name"])) for row in rows]

    async def gallery_models(self, guild_id: int) -> list[str]:
        rows = await self._read(
            f"SELECT DISTINCT j.model FROM jobs AS j WHERE {_SHOWN} ORDER BY j.model", {"guild": guild_id}
        )
        return [str(row["model"]) for row in rows]

    async def results_message_deleted(self, message_ids: list[int]) -> list[int]:
        """The messages ``message_ids`` were deleted in Discord: the results they held are deleted. Their job ids."""

        def body(conn: sqlite3.Connection, now: float) -> list[int]:
            deleted: list[int] = []
            for message_id in message_ids:
                rows = _fetchall(
                    conn,
                    "UPDATE jobs SET result_deleted_at = ? WHERE result_message_id = ? AND status = 'done' "
                    "AND result_deleted_at IS NULL RETURNING id",
                    (now, message_id),
                )
                deleted.extend(int(row["id"]) for row in rows)
            return deleted

        return await self._write(body)

    async def results_channel_deleted(self, channel_id: int) -> list[int]:
        """The channel (or thread) ``channel_id`` was deleted, and every message in it: the results it held are
        deleted. Their job ids."""

        def body(conn: sqlite3.Connection, now: float) -> list[int]:
            rows = _fetchall(
                conn,
                "UPDATE jobs SET result_deleted_at = ? WHERE channel_id = ? AND status = 'done' "
                "AND result_message_id IS NOT NULL AND result_deleted_at IS NULL RETURNING id",
                (now, channel_id),
            )
            return [int(row["id"]) for row in rows]

        return await self._write(body)

    async def learn_age_restricted(self, channels: dict[int, bool]) -> int:
        """Whether each of ``channels`` (id: age-restricted) is, for the jobs made before schema 16 whose channel's
        was not known; how many jobs that told. A job of a channel not given stays unknown, and unshown."""
        if not channels:
            return 0
        mapping = json.dumps({str(channel): int(restricted) for channel, restricted in channels.items()})

        def body(conn: sqlite3.Connection, now: float) -> int:
            cursor = conn.execute(
                "UPDATE jobs SET age_restricted = (SELECT value FROM json_each(:map) WHERE key = "
                "CAST(jobs.channel_id AS TEXT)) WHERE age_restricted IS NULL AND channel_id IS NOT NULL "
                "AND CAST(channel_id AS TEXT) IN (SELECT key FROM json_each(:map))",
                {"map": mapping},
            )
            return cursor.rowcount

        return await self._write(body)

    # ------------------------------------------------------------------ sign-in sessions

    async def start_web_session(
        self, token_hash: str, *, user_id: int, user_name: str, guild_ids: frozenset[int], csrf_token: str, ttl_s: float
    ) -> None:
        """Record a signed-in member (ended sessions are swept at the same time)."""

        def body(conn: sqlite3.Connection, now: float) -> None:
            conn.execute("DELETE FROM web_sessions WHERE expires_at <= ?", (now,))
            conn.execute(
                "INSERT INTO web_sessions (token_hash, user_id, user_name, guild_ids, csrf_token, created_at, "
                "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (token_hash, user_id, user_name, json.dumps(sorted(guild_ids)), csrf_token, now, now + ttl_s),
            )

        await self._write(body)

    async def web_session(self, token_hash: str) -> WebSession | None:
        """The session whose cookie token hashes to ``token_hash``, unless it has ended."""
        rows = await self._read(
            "SELECT user_id, user_name, guild_ids, csrf_token, expires_at FROM web_sessions "
            "WHERE token_hash = ? AND expires_at > ?",
            (token_hash, self._clock()),
        )
        if not rows:
            return None
        row = rows[0]
        return WebSession(
            user_id=int(row["user_id"]),
            user_name=str(row["user_name"]),
            guild_ids=frozenset(int(guild) for guild in json.loads(row["guild_ids"])),
            csrf_token=str(row["csrf_token"]),
            expires_at=float(row["expires_at"]),
        )

    async def end_web_session(self, token_hash: str) -> None:
        def body(conn: sqlite3.Connection, now: float) -> None:
            conn.execute("DELETE FROM web_sessions WHERE token_hash = ?", (token_hash,))

        await self._write(body)


def _shown_images(row: sqlite3.Row) -> tuple[int, ...]:
    withheld = {int(index) for index in json.loads(row["withheld"])}
    return tuple(index for index in range(len(json.loads(row["seeds"]))) if index not in withheld)

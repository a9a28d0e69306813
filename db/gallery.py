"""What the web gallery reads (a server's shown results, searched and filtered) and its sign-in sessions.

``GalleryQueries`` is the part of ``Store`` the gallery goes through (schema 16). One predicate,
``_SHOWN``, says which results a gallery may show, and every read here applies it, the image
route's included, so a result hidden in one place is hidden everywhere: a result is shown when it
was delivered to a channel of that server, its message still stands (no Delete, no ❌, not
deleted in Discord), its member has not deleted their data, and it was not made in an
age-restricted channel nor with NSFW allowed. Images the classifier withheld are left out image by
image (``GalleryJob.shown``).
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass

from db.access import StoreAccess, _fetchall

#: The results of guild ``:guild`` a gallery may show (jobs aliased ``j``).
_SHOWN = (
    "j.guild_id = :guild AND j.status = 'done' AND j.delivery = 'delivered' AND j.result_message_id IS NOT NULL "
    "AND j.result_deleted_at IS NULL AND j.deleted_by_member_at IS NULL AND j.age_restricted = 0 "
    "AND j.nsfw_allowed = 0 AND j.kind <> 'describe' "
    "AND json_array_length(j.withheld) < json_array_length(j.seeds)"
)
#: An upscale is shown under the grid it came from while that grid is shown; on its own otherwise.
_CARD = (
    "(j.kind <> 'upscale' OR NOT EXISTS (SELECT 1 FROM jobs AS p WHERE p.id = j.parent_job_id AND "
    + _SHOWN.replace("j.", "p.")
    + "))"
)
_COLUMNS = (
    "j.id, j.kind, j.parent_job_id, j.parent_image, j.user_id, j.member_name, j.prompt, j.negative_prompt, "
    "j.model, j.width, j.height, j.steps, j.guidance, j.seeds, j.withheld, j.image_paths, j.loras, j.style, "
    "j.finished_at, j.channel_id, j.result_message_id, COALESCE(s.stars, 0) AS stars"
)
_WORD = re.compile(r"\w+")
#: Longest search the gallery reads: more words than this are left out.
MAX_SEARCH_WORDS = 12


@dataclass(frozen=True, slots=True)
class GalleryJob:
    """One shown result: what made it, who, and which of its images may be shown (indices from 0)."""

    id: int
    kind: str
    parent_job_id: int | None
    parent_image: int | None
    user_id: int
    member_name: str
    prompt: str
    negative_prompt: str
    model: str
    width: int
    height: int
    steps: int
    guidance: float
    seeds: tuple[int, ...]
    shown: tuple[int, ...]
    image_paths: tuple[str, ...]
    loras: tuple[str, ...]
    style: str | None
    finished_at: float | None
    channel_id: int | None
    message_id: int
    stars: int


@dataclass(frozen=True, slots=True)
class GalleryPage:
    """A page of a server's gallery: its cards newest first, each grid's shown upscales, and whether more follow."""

    cards: tuple[GalleryJob, ...]
    upscales: dict[int, tuple[GalleryJob, ...]]  # by the grid's job id
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


class GalleryQueries(StoreAccess):
    """A server's shown results, and the gallery's sessions."""

    async def gallery_page(
        self,
        guild_id: int,
        *,
        search: str | None = None,
        member_id: int | None = None,
        model: str | None = None,
        offset: int = 0,
        limit: int = 12,
    ) -> GalleryPage:
        """Cards ``offset`` to ``offset + limit`` of a guild's gallery, newest first, matching the filters."""
        expression = search_expression(search) if search else None

        def load(conn: sqlite3.Connection) -> GalleryPage:
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
                f"SELECT {_COLUMNS} FROM jobs AS j LEFT JOIN result_stars AS s ON s.job_id = j.id "
                f"WHERE {' AND '.join(where)} ORDER BY j.id DESC LIMIT :limit OFFSET :offset",
                params,
            )
            cards = tuple(_gallery_job(row) for row in rows[:limit])
            upscales: dict[int, list[GalleryJob]] = {}
            ids = [card.id for card in cards]
            if ids:
                marks = ", ".join(f":p{n}" for n in range(len(ids)))
                children = _fetchall(
                    conn,
                    f"SELECT {_COLUMNS} FROM jobs AS j LEFT JOIN result_stars AS s ON s.job_id = j.id "
                    f"WHERE {_SHOWN} AND j.kind = 'upscale' AND j.parent_job_id IN ({marks}) ORDER BY j.id",
                    {"guild": guild_id, **{f"p{n}": job_id for n, job_id in enumerate(ids)}},
                )
                for row in children:
                    child = _gallery_job(row)
                    assert child.parent_job_id is not None
                    upscales.setdefault(child.parent_job_id, []).append(child)
            return GalleryPage(
                cards=cards,
                upscales={parent: tuple(jobs) for parent, jobs in upscales.items()},
                has_more=len(rows) > limit,
            )

        return await self._run(load)

    async def gallery_job(self, guild_id: int, job_id: int) -> GalleryJob | None:
        """Job ``job_id`` if guild ``guild_id``'s gallery shows it (as a card or under its grid), else None."""
        rows = await self._read(
            f"SELECT {_COLUMNS} FROM jobs AS j LEFT JOIN result_stars AS s ON s.job_id = j.id "
            f"WHERE j.id = :job AND {_SHOWN}",
            {"guild": guild_id, "job": job_id},
        )
        return _gallery_job(rows[0]) if rows else None

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


def _gallery_job(row: sqlite3.Row) -> GalleryJob:
    seeds = tuple(int(seed) for seed in json.loads(row["seeds"]))
    withheld = {int(index) for index in json.loads(row["withheld"])}
    return GalleryJob(
        id=int(row["id"]),
        kind=str(row["kind"]),
        parent_job_id=row["parent_job_id"],
        parent_image=row["parent_image"],
        user_id=int(row["user_id"]),
        member_name=str(row["member_name"]),
        prompt=str(row["prompt"]),
        negative_prompt=str(row["negative_prompt"]),
        model=str(row["model"]),
        width=int(row["width"]),
        height=int(row["height"]),
        steps=int(row["steps"]),
        guidance=float(row["guidance"]),
        seeds=seeds,
        shown=tuple(index for index in range(len(seeds)) if index not in withheld),
        image_paths=tuple(str(path) for path in json.loads(row["image_paths"])),
        loras=tuple(str(lora) for lora in json.loads(row["loras"])),
        style=row["style"],
        finished_at=row["finished_at"],
        channel_id=row["channel_id"],
        message_id=int(row["result_message_id"]),
        stars=int(row["stars"]),
    )

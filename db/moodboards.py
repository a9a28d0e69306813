"""A guild's moodboards: named sets of reference pictures its moderators curate, audited like the rest.

A set's pictures are kept pictures (``images_dir/sources/<sha256>.png``), named by path and shared
with jobs and other sets; ``db`` keeps no files, so removing a set returns its paths for the caller
to let go of those nothing else names (``JobQueries.source_in_use``). A set's name shares the
guild's namespace with its LoRAs, embeddings and styles (``db.names``).
"""

from __future__ import annotations

import sqlite3

from db.access import StoreAccess, _fetchall
from db.errors import StoreInputError
from db.guilds import _audit
from db.names import _refuse_taken
from db.records import AuditAction, AuditEntry, Moodboard


class MoodboardQueries(StoreAccess):
    async def add_moodboard(self, moodboard: Moodboard, *, actor_id: int) -> AuditEntry:
        """Record a set and its pictures in order, under a name nothing else of the guild has."""
        if not moodboard.images:
            raise StoreInputError("A moodboard needs at least one picture.")

        def body(conn: sqlite3.Connection, now: float) -> AuditEntry:
            _refuse_taken(conn, moodboard.guild_id, moodboard.name)
            conn.execute(
                "INSERT INTO moodboards (guild_id, name, nsfw, added_by, added_at) VALUES (?, ?, ?, ?, ?)",
                (moodboard.guild_id, moodboard.name, int(moodboard.nsfw), actor_id, now),
            )
            conn.executemany(
                "INSERT INTO moodboard_images (guild_id, name, position, path) VALUES (?, ?, ?, ?)",
                [
                    (moodboard.guild_id, moodboard.name, position, path)
                    for position, path in enumerate(moodboard.images)
                ],
            )
            return _audit(
                conn, moodboard.guild_id, actor_id, AuditAction.MOODBOARD_ADDED, None, None, _described(moodboard), now
            )

        return await self._write(body, guild_id=moodboard.guild_id)

    async def remove_moodboard(self, guild_id: int, name: str, *, actor_id: int) -> tuple[AuditEntry, tuple[str, ...]]:
        """Take a set off the guild's list; also its pictures' paths, which other sets or jobs may still name."""

        def body(conn: sqlite3.Connection, now: float) -> tuple[AuditEntry, tuple[str, ...]]:
            found = _load(conn, guild_id, name)
            if not found:
                raise StoreInputError(f"This server has no moodboard named `{name}`.")
            (moodboard,) = found
            conn.execute("DELETE FROM moodboard_images WHERE guild_id = ? AND name = ?", (guild_id, name))
            conn.execute("DELETE FROM moodboards WHERE guild_id = ? AND name = ?", (guild_id, name))
            entry = _audit(
                conn, guild_id, actor_id, AuditAction.MOODBOARD_REMOVED, None, _described(moodboard), None, now
            )
            return entry, moodboard.images

        return await self._write(body, guild_id=guild_id)

    async def moodboards(self, guild_id: int) -> list[Moodboard]:
        """A guild's sets, by name in any case."""
        return list(await self._per_guild("moodboards", guild_id, lambda conn: _load(conn, guild_id)))

    async def moodboard(self, guild_id: int, name: str) -> Moodboard | None:
        """The guild's set called ``name`` in any case, or None."""
        wanted = name.casefold()
        return next((item for item in await self.moodboards(guild_id) if item.name.casefold() == wanted), None)


def _load(conn: sqlite3.Connection, guild_id: int, name: str | None = None) -> tuple[Moodboard, ...]:
    """The guild's sets (the one called ``name``, if given) with their pictures, by name."""
    only = "" if name is None else " AND name = :name"
    sets = _fetchall(
        conn,
        f"SELECT name, nsfw FROM moodboards WHERE guild_id = :guild{only} ORDER BY name COLLATE NOCASE",
        {"guild": guild_id, "name": name},
    )
    images: dict[str, list[str]] = {}
    for row in _fetchall(
        conn,
        f"SELECT name, path FROM moodboard_images WHERE guild_id = :guild{only} ORDER BY name, position",
        {"guild": guild_id, "name": name},
    ):
        images.setdefault(row["name"].casefold(), []).append(row["path"])
    return tuple(
        Moodboard(guild_id, row["name"], bool(row["nsfw"]), tuple(images.get(row["name"].casefold(), ())))
        for row in sets
    )


def _described(moodboard: Moodboard) -> str:
    """The set as the audit log and the moderators' log read it."""
    count = len(moodboard.images)
    nsfw = ", NSFW" if moodboard.nsfw else ""
    return f"moodboard {moodboard.name} ({count} picture{'s' if count != 1 else ''}{nsfw})"

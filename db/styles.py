"""A guild's named styles: moderators' changes, audited like the rest."""

from __future__ import annotations

import sqlite3

from db.access import StoreAccess, _fetchall
from db.errors import StoreInputError
from db.guilds import _audit
from db.names import _refuse_taken
from db.records import AuditAction, AuditEntry, Style


class StyleQueries(StoreAccess):
    async def add_style(self, style: Style, *, actor_id: int) -> AuditEntry:
        def body(conn: sqlite3.Connection, now: float) -> AuditEntry:
            _refuse_taken(conn, style.guild_id, style.name)  # by a style, a LoRA, an embedding or a moodboard
            conn.execute(
                "INSERT INTO guild_styles (guild_id, name, prompt, negative, added_by, added_at) VALUES (?, ?, ?, ?, ?, ?)",
                (style.guild_id, style.name, style.prompt, style.negative, actor_id, now),
            )
            return _audit(conn, style.guild_id, actor_id, AuditAction.STYLE_ADDED, None, None, style.name, now)

        return await self._write(body, guild_id=style.guild_id)

    async def remove_style(self, guild_id: int, name: str, *, actor_id: int) -> AuditEntry:
        def body(conn: sqlite3.Connection, now: float) -> AuditEntry:
            rows = _fetchall(conn, "SELECT name FROM guild_styles WHERE guild_id = ? AND name = ?", (guild_id, name))
            if not rows:
                raise StoreInputError(f"This server has no style named `{name}`.")
            conn.execute("DELETE FROM guild_styles WHERE guild_id = ? AND name = ?", (guild_id, name))
            return _audit(conn, guild_id, actor_id, AuditAction.STYLE_REMOVED, None, rows[0]["name"], None, now)

        return await self._write(body, guild_id=guild_id)

    async def styles(self, guild_id: int) -> list[Style]:
        def load(conn: sqlite3.Connection) -> tuple[Style, ...]:
            rows = _fetchall(
                conn, "SELECT * FROM guild_styles WHERE guild_id = ? ORDER BY name COLLATE NOCASE", (guild_id,)
            )
            return tuple(Style(row["guild_id"], row["name"], row["prompt"], row["negative"]) for row in rows)

        return list(await self._per_guild("styles", guild_id, load))

"""Guild settings, NSFW mode, log channel, filter terms and the audit log.

``GuildQueries`` is the part of ``Store`` that moderators' changes go through;
each change writes its audit entry in the same transaction, and drops the
guild's cached settings and filter terms (``StoreAccess._write(guild_id=...)``).
The helpers below (``_audit``, ``_current_settings``, ...) run inside a
transaction, on the connection's thread; ``db.quotas`` and ``db.store`` use
``_audit`` and ``_current_settings`` too.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from db.access import StoreAccess, _check_credits, _fetchall, _text
from db.errors import StoreInputError
from db.records import MAX_FILTER_TERM_LENGTH, AuditAction, AuditEntry, GuildSettings


class GuildQueries(StoreAccess):
    """A guild's settings, filter terms and audit log."""

    # ------------------------------------------------------------------ guild settings

    async def guild_settings(self, guild_id: int) -> GuildSettings:
        return await self._per_guild("settings", guild_id, lambda conn: _current_settings(conn, guild_id))

    async def set_nsfw_mode(self, guild_id: int, mode: str, *, actor_id: int) -> AuditEntry:
        """Set a guild's NSFW mode. The application owns the modes (``bot.policy.nsfw.NsfwMode``);
        the schema's CHECK keeps anything else out, and the change is then refused whole."""
        mode = str(mode)

        def body(conn: sqlite3.Connection, now: float) -> AuditEntry:
            before = _current_settings(conn, guild_id)
            try:
                _upsert_setting(conn, guild_id, "nsfw_mode", mode, now)
            except sqlite3.IntegrityError:
                raise StoreInputError(f"`{mode}` is not an NSFW mode the database knows.") from None
            return _audit(conn, guild_id, actor_id, AuditAction.NSFW_MODE, None, before.nsfw_mode, mode, now)

        return await self._write(body, guild_id=guild_id)

    async def set_permutation_limit(self, guild_id: int, limit: int, *, actor_id: int) -> AuditEntry:
        """How many jobs one /imagine may make on the guild with permutations and --repeat."""

        def body(conn: sqlite3.Connection, now: float) -> AuditEntry:
            before = _current_settings(conn, guild_id)
            _upsert_setting(conn, guild_id, "permutations", limit, now)
            return _audit(
                conn, guild_id, actor_id, AuditAction.PERMUTATIONS, None, _text(before.permutations), str(limit), now
            )

        return await self._write(body, guild_id=guild_id)

    async def set_draft_channel(self, guild_id: int, channel_id: int, on: bool, *, actor_id: int) -> AuditEntry:
        """Turn draft mode on or off in one channel of a guild."""

        def body(conn: sqlite3.Connection, now: float) -> AuditEntry:
            before = _current_settings(conn, guild_id)
            channels = before.draft_channels | {channel_id} if on else before.draft_channels - {channel_id}
            _upsert_setting(conn, guild_id, "draft_channels", json.dumps(sorted(channels)), now)
            was = "on" if channel_id in before.draft_channels else "off"
            return _audit(
                conn,
                guild_id,
                actor_id,
                AuditAction.DRAFT_MODE,
                f"channel:{channel_id}",
                was,
                "on" if on else "off",
                now,
            )

        return await self._write(body, guild_id=guild_id)

    async def set_starboard(self, guild_id: int, channel_id: int, threshold: int, *, actor_id: int) -> AuditEntry:
        """Where results reaching ``threshold`` ⭐ are reposted; the entry reads "<#channel> at N ⭐" either side."""
        if not 1 <= threshold <= 1000:
            raise StoreInputError("A starboard's threshold must be from 1 to 1000 stars.")

        def body(conn: sqlite3.Connection, now: float) -> AuditEntry:
            before = _current_settings(conn, guild_id)
            _upsert_setting(conn, guild_id, "starboard_channel_id", channel_id, now)
            _upsert_setting(conn, guild_id, "starboard_threshold", threshold, now)
            was = (
                None
                if before.starboard_channel_id is None
                else f"<#{before.starboard_channel_id}> at {before.starboard_threshold or 'the default'} ⭐"
            )
            return _audit(
                conn, guild_id, actor_id, AuditAction.STARBOARD, None, was, f"<#{channel_id}> at {threshold} ⭐", now
            )

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
        """Add a term to the guild's list. The caller normalises it first (``bot.policy.content_filter``);
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
        def load(conn: sqlite3.Connection) -> tuple[str, ...]:
            rows = _fetchall(conn, "SELECT term FROM filter_terms WHERE guild_id = ? ORDER BY term", (guild_id,))
            return tuple(row["term"] for row in rows)

        return list(await self._per_guild("filter terms", guild_id, load))

    async def audit_log(self, guild_id: int, limit: int = 50) -> list[AuditEntry]:
        """The guild's most recent changes, newest first."""
        if not 1 <= limit <= 1000:
            raise ValueError("The audit log limit must be from 1 to 1000.")
        rows = await self._read(
            "SELECT * FROM audit_log WHERE guild_id = ? ORDER BY id DESC LIMIT ?", (guild_id, limit)
        )
        return [_audit_from_row(row) for row in rows]


# ---------------------------------------------------------------------- helpers


def _current_settings(conn: sqlite3.Connection, guild_id: int) -> GuildSettings:
    rows = _fetchall(conn, "SELECT * FROM guild_settings WHERE guild_id = ?", (guild_id,))
    return _settings_from_row(guild_id, rows[0] if rows else None)


_SETTING_COLUMNS = frozenset(
    {
        "nsfw_mode",
        "daily_credits",
        "log_channel_id",
        "permutations",
        "draft_channels",
        "starboard_channel_id",
        "starboard_threshold",
    }
)


def _upsert_setting(conn: sqlite3.Connection, guild_id: int, column: str, value: Any, now: float) -> None:
    assert column in _SETTING_COLUMNS  # column names cannot be parameters; only these are ever used
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


def _settings_from_row(guild_id: int, row: sqlite3.Row | None) -> GuildSettings:
    if row is None:
        return GuildSettings(guild_id=guild_id)
    return GuildSettings(
        guild_id=guild_id,
        nsfw_mode=row["nsfw_mode"],
        daily_credits=row["daily_credits"],
        log_channel_id=row["log_channel_id"],
        permutations=row["permutations"],
        draft_channels=frozenset(int(channel) for channel in json.loads(row["draft_channels"])),
        starboard_channel_id=row["starboard_channel_id"],
        starboard_threshold=row["starboard_threshold"],
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


def _check_term(term: str) -> None:
    if not isinstance(term, str) or not term.strip():
        raise StoreInputError("A filter term cannot be empty.")
    if len(term) > MAX_FILTER_TERM_LENGTH:
        raise StoreInputError(f"A filter term can be at most {MAX_FILTER_TERM_LENGTH} characters long.")

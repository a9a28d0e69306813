"""Members' own preferences: Remix and the defaults ``/settings`` keeps, one row per member who changed one.

``MemberQueries`` is the part of ``Store`` a member's own switches go through; a member with no
row, or a NULL column, has the defaults of ``db.records.MemberPreferences`` (the server's).
"""

from __future__ import annotations

import dataclasses
import sqlite3
from typing import Any

from db.access import StoreAccess, _fetchall
from db.errors import StoreInputError
from db.records import MemberPreferences

#: The defaults a member may set, each a column of ``member_preferences``.
DEFAULTS = ("model", "aspect", "steps", "guidance", "count", "negative", "style")


class MemberQueries(StoreAccess):
    """A member's preferences."""

    async def member_preferences(self, user_id: int) -> MemberPreferences:
        rows = await self._read("SELECT * FROM member_preferences WHERE user_id = ?", (user_id,))
        return _preferences_from_row(user_id, rows[0] if rows else None)

    async def toggle_remix(self, user_id: int) -> MemberPreferences:
        """Turn a member's Remix on if it was off and off if it was on, in one transaction; the new state."""

        def body(conn: sqlite3.Connection, now: float) -> MemberPreferences:
            current = _current(conn, user_id)
            _upsert(conn, user_id, "remix", int(not current.remix), now)
            return dataclasses.replace(current, remix=not current.remix)

        return await self._write(body)

    async def set_member_default(self, user_id: int, name: str, value: Any) -> MemberPreferences:
        """Set one of a member's defaults (``None``: back to the server's); the new preferences."""
        if name not in DEFAULTS:
            raise StoreInputError(f"`{name}` is not a setting.")

        def body(conn: sqlite3.Connection, now: float) -> MemberPreferences:
            _upsert(conn, user_id, name, value, now)
            return _current(conn, user_id)

        return await self._write(body)

    async def reset_member_preferences(self, user_id: int) -> MemberPreferences:
        """Every default back to the server's, and Remix off."""

        def body(conn: sqlite3.Connection, now: float) -> MemberPreferences:
            conn.execute("DELETE FROM member_preferences WHERE user_id = ?", (user_id,))
            return MemberPreferences(user_id=user_id)

        return await self._write(body)


def _current(conn: sqlite3.Connection, user_id: int) -> MemberPreferences:
    rows = _fetchall(conn, "SELECT * FROM member_preferences WHERE user_id = ?", (user_id,))
    return _preferences_from_row(user_id, rows[0] if rows else None)


def _upsert(conn: sqlite3.Connection, user_id: int, column: str, value: Any, now: float) -> None:
    # ``column`` is one of DEFAULTS or "remix", never text from outside.
    conn.execute(
        f"INSERT INTO member_preferences (user_id, {column}, updated_at) VALUES (?, ?, ?) "
        f"ON CONFLICT (user_id) DO UPDATE SET {column} = excluded.{column}, updated_at = excluded.updated_at",
        (user_id, value, now),
    )


def _preferences_from_row(user_id: int, row: sqlite3.Row | None) -> MemberPreferences:
    if row is None:
        return MemberPreferences(user_id=user_id)
    return MemberPreferences(
        user_id=user_id,
        remix=bool(row["remix"]),
        **{name: row[name] for name in DEFAULTS},
    )

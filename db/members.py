"""Members' own preferences (Remix, and the personal defaults to come), one row per member who changed one.

``MemberQueries`` is the part of ``Store`` a member's own switches go through; a member
with no row has the defaults of ``db.records.MemberPreferences``.
"""

from __future__ import annotations

import sqlite3

from db.access import StoreAccess, _fetchall
from db.records import MemberPreferences


class MemberQueries(StoreAccess):
    """A member's preferences."""

    async def member_preferences(self, user_id: int) -> MemberPreferences:
        rows = await self._read("SELECT * FROM member_preferences WHERE user_id = ?", (user_id,))
        return _preferences_from_row(user_id, rows[0] if rows else None)

    async def toggle_remix(self, user_id: int) -> MemberPreferences:
        """Turn a member's Remix on if it was off and off if it was on, in one transaction; the new state."""

        def body(conn: sqlite3.Connection, now: float) -> MemberPreferences:
            rows = _fetchall(conn, "SELECT * FROM member_preferences WHERE user_id = ?", (user_id,))
            remix = not _preferences_from_row(user_id, rows[0] if rows else None).remix
            conn.execute(
                "INSERT INTO member_preferences (user_id, remix, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (user_id) DO UPDATE SET remix = excluded.remix, updated_at = excluded.updated_at",
                (user_id, int(remix), now),
            )
            return MemberPreferences(user_id=user_id, remix=remix)

        return await self._write(body)


def _preferences_from_row(user_id: int, row: sqlite3.Row | None) -> MemberPreferences:
    if row is None:
        return MemberPreferences(user_id=user_id)
    return MemberPreferences(user_id=user_id, remix=bool(row["remix"]))

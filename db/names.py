"""A guild's one namespace: its LoRAs, embeddings, styles and moodboards share their names.

A member writes a name (an embedding's word in a prompt, ``--style``, ``--mood``), so a name
means one thing in a guild whatever the case it is written in (every name column is
``COLLATE NOCASE``). Each table's own key keeps a name unique within it; ``_refuse_taken``
keeps it unique across them, inside the transaction that adds one.
"""

from __future__ import annotations

import sqlite3

from db.access import StoreAccess, _fetchall
from db.errors import StoreInputError

#: What in a guild bears a name: "lora" or "embedding" (as guild_fine_tunes says), "style" or "moodboard".
_HOLDERS = (
    "SELECT kind FROM guild_fine_tunes WHERE guild_id = :guild AND name = :name "
    "UNION ALL SELECT 'style' FROM guild_styles WHERE guild_id = :guild AND name = :name "
    "UNION ALL SELECT 'moodboard' FROM moodboards WHERE guild_id = :guild AND name = :name "
    "LIMIT 1"
)


class NameQueries(StoreAccess):
    async def ensure_name_free(self, guild_id: int, name: str) -> None:
        """Refuse, before an upload is downloaded, a name something of the guild has already.

        The add itself checks again, in its transaction: this only spares the download.
        """
        await self._run(lambda conn: _refuse_taken(conn, guild_id, name))


def _holder_of(conn: sqlite3.Connection, guild_id: int, name: str) -> str | None:
    """What in the guild is called ``name`` (in any case), or None."""
    rows = _fetchall(conn, _HOLDERS, {"guild": guild_id, "name": name})
    return str(rows[0][0]) if rows else None


def _refuse_taken(conn: sqlite3.Connection, guild_id: int, name: str) -> None:
    holder = _holder_of(conn, guild_id, name)
    if holder is not None:
        article = "an" if holder[0] in "aeiou" else "a"
        raise StoreInputError(f"This server already has {article} {holder} named `{name}`.")

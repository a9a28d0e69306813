"""A guild's approved fine-tunes and the models it may use: moderators' changes, audited like the rest.

``FineTuneQueries`` is the part of ``Store`` those go through. A file is recorded once, by its
SHA-256; each guild names the files it approved. Removing a guild's last reference to a file
returns the file's hash, so the caller can delete the file itself (``db`` keeps no files).
"""

from __future__ import annotations

import sqlite3

from db.access import StoreAccess, _fetchall
from db.errors import StoreInputError
from db.guilds import _audit
from db.names import _refuse_taken
from db.records import AuditAction, AuditEntry, FineTune


class FineTuneQueries(StoreAccess):
    """Fine-tune files, the names guilds gave them, and the models a guild switched off."""

    async def add_fine_tune(self, fine_tune: FineTune, *, size_bytes: int, actor_id: int) -> AuditEntry:
        """Approve a file for a guild under a name; the name must be free in that guild (``db.names``)."""

        def body(conn: sqlite3.Connection, now: float) -> AuditEntry:
            _refuse_taken(conn, fine_tune.guild_id, fine_tune.name)
            conn.execute(
                "INSERT INTO fine_tune_files (sha256, kind, family, size_bytes, stored_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (sha256) DO NOTHING",
                (fine_tune.sha256, fine_tune.kind, fine_tune.family, size_bytes, now),
            )
            conn.execute(
                "INSERT INTO guild_fine_tunes (guild_id, name, kind, sha256, weight, nsfw, added_by, added_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    fine_tune.guild_id,
                    fine_tune.name,
                    fine_tune.kind,
                    fine_tune.sha256,
                    fine_tune.weight,
                    int(fine_tune.nsfw),
                    actor_id,
                    now,
                ),
            )
            described = f"{fine_tune.kind} {fine_tune.name} ({fine_tune.family}, sha256 {fine_tune.sha256[:12]})"
            return _audit(conn, fine_tune.guild_id, actor_id, AuditAction.FINE_TUNE_ADDED, None, None, described, now)

        return await self._write(body, guild_id=fine_tune.guild_id)

    async def remove_fine_tune(
        self, guild_id: int, name: str, kind: str, *, actor_id: int
    ) -> tuple[AuditEntry, str | None]:
        """Take a name off a guild's list; also the file's hash if no guild names it any more (else None)."""

        def body(conn: sqlite3.Connection, now: float) -> tuple[AuditEntry, str | None]:
            rows = _fetchall(
                conn,
                "SELECT sha256, name FROM guild_fine_tunes WHERE guild_id = ? AND name = ? AND kind = ?",
                (guild_id, name, kind),
            )
            if not rows:
                raise StoreInputError(f"This server has no {kind} named `{name}`.")
            sha256, stored_name = rows[0]["sha256"], rows[0]["name"]
            conn.execute("DELETE FROM guild_fine_tunes WHERE guild_id = ? AND name = ?", (guild_id, name))
            orphan: str | None = None
            if not _fetchall(conn, "SELECT 1 FROM guild_fine_tunes WHERE sha256 = ? LIMIT 1", (sha256,)):
                conn.execute("DELETE FROM fine_tune_files WHERE sha256 = ?", (sha256,))
                orphan = sha256
            entry = _audit(
                conn, guild_id, actor_id, AuditAction.FINE_TUNE_REMOVED, None, f"{kind} {stored_name}", None, now
            )
            return entry, orphan

        return await self._write(body, guild_id=guild_id)

    async def fine_tunes(self, guild_id: int, kind: str | None = None) -> list[FineTune]:
        """A guild's approved fine-tunes (of one kind if given), by name."""

        def load(conn: sqlite3.Connection) -> tuple[FineTune, ...]:
            rows = _fetchall(
                conn,
                "SELECT g.*, f.family FROM guild_fine_tunes AS g JOIN fine_tune_files AS f USING (sha256) "
                "WHERE g.guild_id = ? ORDER BY g.name COLLATE NOCASE",
                (guild_id,),
            )
            return tuple(
                FineTune(
                    guild_id=row["guild_id"],
                    name=row["name"],
                    kind=row["kind"],
                    sha256=row["sha256"],
                    family=row["family"],
                    weight=float(row["weight"]),
                    nsfw=bool(row["nsfw"]),
                )
                for row in rows
            )

        every = await self._per_guild("fine-tunes", guild_id, load)
        return [item for item in every if kind is None or item.kind == kind]

    async def fine_tune_file_known(self, sha256: str) -> bool:
        return bool(await self._read("SELECT 1 FROM fine_tune_files WHERE sha256 = ?", (sha256,)))

    async def disabled_models(self, guild_id: int) -> set[str]:
        def load(conn: sqlite3.Connection) -> frozenset[str]:
            rows = _fetchall(conn, "SELECT model FROM guild_disabled_models WHERE guild_id = ?", (guild_id,))
            return frozenset(row["model"] for row in rows)

        return set(await self._per_guild("disabled models", guild_id, load))

    async def set_model_enabled(self, guild_id: int, model: str, enabled: bool, *, actor_id: int) -> AuditEntry:
        def body(conn: sqlite3.Connection, now: float) -> AuditEntry:
            if enabled:
                conn.execute("DELETE FROM guild_disabled_models WHERE guild_id = ? AND model = ?", (guild_id, model))
                action = AuditAction.MODEL_ENABLED
            else:
                conn.execute(
                    "INSERT INTO guild_disabled_models (guild_id, model, disabled_by, disabled_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (guild_id, model) DO NOTHING",
                    (guild_id, model, actor_id, now),
                )
                action = AuditAction.MODEL_DISABLED
            return _audit(conn, guild_id, actor_id, action, None, None, model, now)

        return await self._write(body, guild_id=guild_id)

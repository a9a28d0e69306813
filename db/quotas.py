"""Quota overrides, limits and usage, and the ledger helpers that count a rolling window.

``QuotaQueries`` is the part of ``Store`` that reads and changes what users may
spend. The ledger is never edited: charges, refunds and resets are rows, and a
refund or reset carries its charge's time, so one range query counts the
window (``_window_charges``). ``db.store`` charges and refunds jobs with the
helpers below (``_quota_limit``, ``_window_usage``, ``_refund``, ``_check_window``).

Quotas are kept per (guild, user). Direct messages have no guild, so their
ledger rows and overrides use guild id ``0`` (``DM_GUILD_ID``); jobs keep
``guild_id=None`` for DMs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from db.access import DAY_S, StoreAccess, _check_credits, _fetchall, _ledger_guild, _text
from db.errors import StoreInputError
from db.guilds import _audit, _current_settings
from db.records import AuditAction, AuditEntry, QuotaOverride, QuotaRule, Usage


class QuotaQueries(StoreAccess):
    """Quota overrides, a user's limit and usage, and a moderator's reset."""

    # ------------------------------------------------------------------ quotas

    async def set_quota_override(
        self,
        guild_id: int,
        *,
        user_id: int | None = None,
        role_id: int | None = None,
        credits: int,
        actor_id: int,
    ) -> AuditEntry:
        """Give one user or one role its own daily credits in a guild, replacing any earlier value."""
        column, subject_id, target = _override_subject(user_id, role_id)
        _check_credits(credits)

        def body(conn: sqlite3.Connection, now: float) -> AuditEntry:
            before = _override_credits(conn, guild_id, column, subject_id)
            if before is None:
                conn.execute(
                    f"INSERT INTO quota_overrides (guild_id, {column}, credits, set_by, set_at) VALUES (?, ?, ?, ?, ?)",
                    (guild_id, subject_id, credits, actor_id, now),
                )
            else:
                conn.execute(
                    f"UPDATE quota_overrides SET credits = ?, set_by = ?, set_at = ? "
                    f"WHERE guild_id = ? AND {column} = ?",
                    (credits, actor_id, now, guild_id, subject_id),
                )
            return _audit(
                conn,
                guild_id,
                actor_id,
                AuditAction.QUOTA_OVERRIDE_SET,
                target,
                _text(before),
                _text(credits),
                now,
            )

        return await self._write(body)

    async def clear_quota_override(
        self, guild_id: int, *, user_id: int | None = None, role_id: int | None = None, actor_id: int
    ) -> AuditEntry:
        column, subject_id, target = _override_subject(user_id, role_id)

        def body(conn: sqlite3.Connection, now: float) -> AuditEntry:
            before = _override_credits(conn, guild_id, column, subject_id)
            if before is None:
                who = "user" if column == "user_id" else "role"
                raise StoreInputError(f"That {who} has no quota override on this server.")
            conn.execute(f"DELETE FROM quota_overrides WHERE guild_id = ? AND {column} = ?", (guild_id, subject_id))
            return _audit(
                conn, guild_id, actor_id, AuditAction.QUOTA_OVERRIDE_CLEARED, target, _text(before), None, now
            )

        return await self._write(body)

    async def quota_overrides(self, guild_id: int) -> list[QuotaOverride]:
        rows = await self._read("SELECT * FROM quota_overrides WHERE guild_id = ? ORDER BY id", (guild_id,))
        return [
            QuotaOverride(
                guild_id=row["guild_id"],
                user_id=row["user_id"],
                role_id=row["role_id"],
                credits=row["credits"],
                set_by=row["set_by"],
                set_at=row["set_at"],
            )
            for row in rows
        ]

    async def quota_limit(self, guild_id: int | None, user_id: int, role_ids: Iterable[int], default: int) -> int:
        """A user's daily credits: their own override, else the most generous of their roles'
        overrides, else the guild's daily credits, else ``default`` (the bot-wide setting)."""
        rule = QuotaRule(tuple(role_ids), default)
        return await self._run(lambda conn: _quota_limit(conn, _ledger_guild(guild_id), user_id, rule))

    async def usage(self, guild_id: int | None, user_id: int, *, window_s: float = DAY_S) -> Usage:
        _check_window(window_s)
        now = self._clock()
        return await self._run(lambda conn: _window_usage(conn, _ledger_guild(guild_id), user_id, now, window_s))

    async def reset_usage(
        self, guild_id: int | None, user_id: int, *, actor_id: int, window_s: float = DAY_S
    ) -> AuditEntry:
        """Give a user their whole limit back now.

        The ledger is never edited: each charge still counted gets a ``reset``
        row that compensates what is left of it, so the history still adds up.
        """
        _check_window(window_s)
        guild = _ledger_guild(guild_id)

        def body(conn: sqlite3.Connection, now: float) -> AuditEntry:
            charges = _window_charges(conn, guild, user_id, now, window_s)
            used = sum(charge.net for charge in charges)
            for charge in charges:
                if charge.net > 0:
                    conn.execute(
                        "INSERT INTO ledger (guild_id, user_id, kind, credits, job_id, charge_id, at, "
                        "recorded_at, reason, actor_id) VALUES (?, ?, 'reset', ?, ?, ?, ?, ?, ?, ?)",
                        (
                            guild,
                            user_id,
                            -charge.net,
                            charge.job_id,
                            charge.id,
                            charge.at,
                            now,
                            "reset by a moderator",
                            actor_id,
                        ),
                    )
            return _audit(conn, guild, actor_id, AuditAction.USAGE_RESET, f"user:{user_id}", str(used), "0", now)

        return await self._write(body)


# ---------------------------------------------------------------------- helpers


@dataclass(frozen=True, slots=True)
class _WindowCharge:
    """One charge still inside the window, with what is left of it after refunds."""

    id: int
    job_id: int | None
    at: float
    net: int


def _window_charges(
    conn: sqlite3.Connection, guild_id: int, user_id: int, now: float, window_s: float
) -> list[_WindowCharge]:
    """Charges whose time is inside ``(now - window_s, now]``, oldest first, net of compensation.

    Refunds and resets carry their charge's ``at``, so one range query finds a
    charge together with everything that compensated it.
    """
    rows = _fetchall(
        conn,
        "SELECT COALESCE(charge_id, id) AS charge, MIN(job_id) AS job_id, MIN(at) AS at, "
        "       SUM(credits) AS net "
        "FROM ledger WHERE guild_id = ? AND user_id = ? AND at > ? "
        "GROUP BY COALESCE(charge_id, id) ORDER BY MIN(at), COALESCE(charge_id, id)",
        (guild_id, user_id, now - window_s),
    )
    return [_WindowCharge(row["charge"], row["job_id"], row["at"], int(row["net"])) for row in rows]


def _window_usage(conn: sqlite3.Connection, guild_id: int, user_id: int, now: float, window_s: float) -> Usage:
    charges = [charge for charge in _window_charges(conn, guild_id, user_id, now, window_s) if charge.net > 0]
    used = sum(charge.net for charge in charges)
    if not charges:
        return Usage(used=0, next_free_at=None, next_free_credits=0)
    oldest = charges[0].at
    freed = sum(charge.net for charge in charges if charge.at == oldest)
    return Usage(used=used, next_free_at=oldest + window_s, next_free_credits=freed)


def _quota_limit(conn: sqlite3.Connection, guild: int, user_id: int, rule: QuotaRule) -> int:
    rows = _fetchall(
        conn,
        "SELECT user_id, role_id, credits FROM quota_overrides "
        "WHERE guild_id = ? AND (user_id = ? OR role_id IS NOT NULL)",
        (guild, user_id),
    )
    roles = set(rule.role_ids)
    role_limits = []
    for row in rows:
        if row["user_id"] == user_id:
            return int(row["credits"])
        if row["role_id"] in roles:
            role_limits.append(int(row["credits"]))
    if role_limits:
        return max(role_limits)
    settings = _current_settings(conn, guild)
    if settings.daily_credits is not None:
        return settings.daily_credits
    return rule.default


def _override_credits(conn: sqlite3.Connection, guild_id: int, column: str, subject_id: int) -> int | None:
    rows = _fetchall(
        conn, f"SELECT credits FROM quota_overrides WHERE guild_id = ? AND {column} = ?", (guild_id, subject_id)
    )
    return int(rows[0]["credits"]) if rows else None


def _refund(conn: sqlite3.Connection, job_id: int, credits: int | None, reason: str, now: float) -> int:
    """Give back ``credits`` of a job's charge (``None``: all that is left of it), never more than it."""
    rows = _fetchall(
        conn,
        "SELECT c.id, c.guild_id, c.user_id, c.credits, c.at, "
        "       COALESCE((SELECT -SUM(r.credits) FROM ledger AS r WHERE r.charge_id = c.id), 0) "
        "           AS compensated "
        "FROM ledger AS c WHERE c.job_id = ? AND c.kind = 'charge'",
        (job_id,),
    )
    if not rows:
        return 0
    charge = rows[0]
    left = int(charge["credits"]) - int(charge["compensated"])
    amount = left if credits is None else min(credits, left)
    if amount <= 0:
        return 0
    conn.execute(
        "INSERT INTO ledger (guild_id, user_id, kind, credits, job_id, charge_id, at, recorded_at, "
        "reason) VALUES (?, ?, 'refund', ?, ?, ?, ?, ?, ?)",
        (charge["guild_id"], charge["user_id"], -amount, job_id, charge["id"], charge["at"], now, reason),
    )
    return amount


def _check_window(window_s: float) -> None:
    if not window_s > 0:
        raise ValueError("A quota window must be longer than zero seconds.")


def _override_subject(user_id: int | None, role_id: int | None) -> tuple[str, int, str]:
    if (user_id is None) == (role_id is None):
        raise StoreInputError("A quota override is for exactly one user or one role.")
    if user_id is not None:
        return "user_id", user_id, f"user:{user_id}"
    assert role_id is not None
    return "role_id", role_id, f"role:{role_id}"

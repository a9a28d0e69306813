"""SQLite persistence for Latentcord: the only package that contains SQL.

Imports the standard library only (sqlite3, in a thread of its own: ``db.connection``); it knows nothing about
Discord, torch or the rest of the bot. Open it with ``await Store.open(path, recipe=...)``, where ``recipe`` is the dataclass jobs are made from.
"""

from __future__ import annotations

from db.errors import QuotaExhausted, StorageUnavailable, StoreError, StoreInputError, UnknownJob
from db.records import (
    DM_GUILD_ID,
    INTERACTION_TOKEN_LIFETIME_S,
    MAX_CREDITS,
    MAX_FILTER_TERM_LENGTH,
    AuditAction,
    AuditEntry,
    GuildSettings,
    JobRecord,
    JobStatus,
    NewJob,
    QuotaOverride,
    Usage,
)
from db.store import DAY_S, UNSET, Store

__all__ = [
    "DAY_S",
    "DM_GUILD_ID",
    "INTERACTION_TOKEN_LIFETIME_S",
    "MAX_CREDITS",
    "MAX_FILTER_TERM_LENGTH",
    "UNSET",
    "AuditAction",
    "AuditEntry",
    "GuildSettings",
    "JobRecord",
    "JobStatus",
    "NewJob",
    "QuotaExhausted",
    "QuotaOverride",
    "StorageUnavailable",
    "Store",
    "StoreError",
    "StoreInputError",
    "UnknownJob",
    "Usage",
]

"""The store's value objects, as the application hands them to front ends.

Cogs never import ``db``: what they are given (an audit entry, a member's usage) is
named here.
"""

from __future__ import annotations

from bot.policy.nsfw import NsfwMode
from db.records import MAX_FILTER_TERM_LENGTH, AuditEntry, GuildSettings, MemberPreferences, Usage

__all__ = ["MAX_FILTER_TERM_LENGTH", "AuditEntry", "GuildSettings", "MemberPreferences", "NsfwMode", "Usage"]

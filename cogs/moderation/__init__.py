"""Moderator commands: /filter, /nsfw, /quota, /modlog, /lora, /embedding, /model, /style, /moodboard, /draft,
/starboard (and the ⭐ reactions it reposts on).

Every change is audited and logged.

Discord hides these commands from members without Manage Server through their
default permissions, but not every client honours that, so each one checks the
permission again when it runs.

Each group of commands is a class of its own module (``_filter``, ``_nsfw``, ``_quota``,
``_modlog``, ``_finetunes``, ``_styles``, ``_moodboards``, ``_draft``, ``_starboard``, on the base in ``_base``); the one
``Moderation`` cog is all of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cogs.moderation._draft import DraftCommands
from cogs.moderation._filter import FilterCommands
from cogs.moderation._finetunes import FineTuneCommands
from cogs.moderation._modlog import ModlogCommands
from cogs.moderation._moodboards import MoodboardCommands
from cogs.moderation._nsfw import NsfwCommands
from cogs.moderation._quota import QuotaCommands
from cogs.moderation._starboard import StarboardCommands
from cogs.moderation._styles import StyleCommands

if TYPE_CHECKING:
    from bot.app import LatentcordBot

__all__ = ["Moderation", "setup"]


# discord.py collects a cog's commands from its bases last to first, so this order registers
# /filter, /quota, /nsfw, /modlog, as they were registered when they were one class.
class Moderation(
    StarboardCommands,
    MoodboardCommands,
    DraftCommands,
    StyleCommands,
    FineTuneCommands,
    ModlogCommands,
    NsfwCommands,
    QuotaCommands,
    FilterCommands,
):
    pass


async def setup(bot: LatentcordBot) -> None:
    await bot.add_cog(Moderation(bot))

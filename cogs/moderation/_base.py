"""What every moderator command shares: the moderation service, and how a change is answered and logged."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.jobs.records import AuditEntry
from cogs._shared.moderators import MANAGE_GUILD, describe_change, guild_of, post_to_modlog
from cogs._shared.replies import reply_ephemeral

if TYPE_CHECKING:
    from bot.app import LatentcordBot


def moderator_group(name: str, description: str) -> app_commands.Group:
    """A group of moderator commands: for servers only, and hidden by Discord from members who are not moderators."""
    return app_commands.Group(name=name, description=description, default_permissions=MANAGE_GUILD, guild_only=True)


class ModeratorCommands(commands.Cog):
    """The base of each group of moderator commands; the ``Moderation`` cog is all of them in one."""

    def __init__(self, bot: LatentcordBot) -> None:
        self.bot = bot
        self.moderation = bot.moderation

    async def _changed(self, interaction: discord.Interaction[Any], entry: AuditEntry, reply: str) -> None:
        await reply_ephemeral(interaction, reply)
        await post_to_modlog(self.bot, guild_of(interaction), describe_change(entry))

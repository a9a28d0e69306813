"""/modlog: the channel where the bot reports moderator changes and rejected prompts."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from cogs._shared.moderators import guild_of, moderators_only
from cogs.moderation._base import ModeratorCommands


class ModlogCommands(ModeratorCommands):
    @app_commands.command(name="modlog", description="Where the bot reports moderator changes and rejected prompts.")
    @app_commands.describe(channel="The moderator log channel")
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.guild_only()
    @moderators_only()
    async def modlog(self, interaction: discord.Interaction[Any], channel: discord.TextChannel) -> None:
        entry = await self.moderation.set_log_channel(guild_of(interaction), channel.id, actor_id=interaction.user.id)
        await self._changed(interaction, entry, f"Moderator changes and rejected prompts now go to {channel.mention}.")

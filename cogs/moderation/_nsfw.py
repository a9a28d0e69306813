"""/nsfw: where NSFW prompts and images are allowed on a server."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from bot.jobs.records import NsfwMode
from cogs._shared.moderators import guild_of, moderators_only
from cogs.moderation._base import ModeratorCommands


class NsfwCommands(ModeratorCommands):
    @app_commands.command(name="nsfw", description="Where NSFW prompts and images are allowed on this server.")
    @app_commands.describe(mode="block: nowhere; age-restricted: only in channels Discord marks age-restricted")
    @app_commands.choices(mode=[app_commands.Choice(name=mode.value, value=mode.value) for mode in NsfwMode])
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.guild_only()
    @moderators_only()
    async def nsfw(self, interaction: discord.Interaction[Any], mode: app_commands.Choice[str]) -> None:
        chosen = NsfwMode(mode.value)
        entry = await self.moderation.set_nsfw_mode(guild_of(interaction), chosen, actor_id=interaction.user.id)
        reply = {
            NsfwMode.BLOCK: "NSFW prompts and images are now blocked in every channel.",
            NsfwMode.AGE_RESTRICTED: "NSFW is now allowed in age-restricted channels only, and blocked everywhere else.",
        }[chosen]
        await self._changed(interaction, entry, reply)

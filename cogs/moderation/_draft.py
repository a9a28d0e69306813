"""/draft: fast previews in a channel, with DPM++ 2M in fewer steps."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from bot.jobs.requests import DRAFT_STEP_SHARE
from cogs._shared.moderators import guild_of, moderators_only
from cogs.moderation._base import ModeratorCommands

Channel = discord.TextChannel | discord.Thread | discord.VoiceChannel | discord.StageChannel


class DraftCommands(ModeratorCommands):
    @app_commands.command(name="draft", description="Fast previews in a channel: DPM++ 2M in fewer steps.")
    @app_commands.describe(
        mode="on: /imagine there draws fast drafts; off: full renders again",
        channel="The channel (default: this one)",
    )
    @app_commands.choices(mode=[app_commands.Choice(name=name, value=name) for name in ("on", "off")])
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.guild_only()
    @moderators_only()
    async def draft(
        self, interaction: discord.Interaction[Any], mode: app_commands.Choice[str], channel: Channel | None = None
    ) -> None:
        channel_id = channel.id if channel is not None else interaction.channel_id
        assert channel_id is not None  # a guild command always comes from a channel
        on = mode.value == "on"
        entry = await self.moderation.set_draft(guild_of(interaction), channel_id, on, actor_id=interaction.user.id)
        share = round(DRAFT_STEP_SHARE * 100)
        reply = (
            f"Draft mode is now on in <#{channel_id}>: /imagine there draws fast previews with DPM++ 2M "
            f"in {share}% of the model's steps, unless a member sets the steps."
            if on
            else f"Draft mode is now off in <#{channel_id}>: /imagine there draws full renders again."
        )
        await self._changed(interaction, entry, reply)

"""/prefer: a member's own switches, answered to them alone. Remix first; the /settings panel builds on it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from cogs._shared.replies import reply_ephemeral

if TYPE_CHECKING:
    from bot.app import LatentcordBot

REMIX_ON = (
    "Remix mode is now on: V1-V4, 🔄, Vary, Zoom Out and Pan first open a window where you can change the prompt."
)
REMIX_OFF = "Remix mode is now off: those buttons start at once with the same prompt."


class Preferences(commands.Cog):
    prefer = app_commands.Group(
        name="prefer",
        description="Your own preferences",
        allowed_contexts=app_commands.AppCommandContext(guild=True, dm_channel=True, private_channel=False),
    )

    def __init__(self, bot: LatentcordBot) -> None:
        self.bot = bot

    @prefer.command(name="remix", description="Turn Remix mode on or off: edit the prompt when you vary or re-roll.")
    async def remix(self, interaction: discord.Interaction[Any]) -> None:
        on = await self.bot.service.toggle_remix(interaction.user.id)
        await reply_ephemeral(interaction, REMIX_ON if on else REMIX_OFF)


async def setup(bot: LatentcordBot) -> None:
    await bot.add_cog(Preferences(bot))

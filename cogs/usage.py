"""/usage: a member's own credits and queued jobs, ephemerally."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.messages import fit_content
from cogs._shared.origin import origin_of
from cogs._shared.usage_text import describe_usage

if TYPE_CHECKING:
    from bot.app import LatentcordBot


class Usage(commands.Cog):
    def __init__(self, bot: LatentcordBot) -> None:
        self.bot = bot

    @app_commands.command(name="usage", description="Your credits used and left, and your queued jobs.")
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=False)
    async def usage(self, interaction: discord.Interaction[Any]) -> None:
        origin = origin_of(interaction)
        service = self.bot.service
        limit = await service.quota_limit(origin)
        usage = await self.bot.store.usage(origin.quota_guild, origin.user_id)
        lines = [describe_usage(usage, limit, self.bot.clock())]
        pending = service.worker.pending_jobs(origin.user_id)
        if pending:
            lines.append("Your jobs in the queue:")
            for item in pending:
                position = service.worker.position(item.job_id)
                where = "running now" if position == 0 else f"position {position}"
                prompt = item.tasks[0].prompt
                lines.append(f"• job {item.job_id} ({where}): {prompt[:80]}")
        else:
            lines.append("You have no jobs in the queue.")
        await interaction.response.send_message(fit_content("\n".join(lines)), ephemeral=True)


async def setup(bot: LatentcordBot) -> None:
    await bot.add_cog(Usage(bot))

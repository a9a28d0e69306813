"""/usage: a member's own credits and queued jobs, ephemerally."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from cogs._shared.origin import origin_of
from cogs._shared.replies import reply_ephemeral
from cogs._shared.usage_text import credits, describe_usage

if TYPE_CHECKING:
    from bot.app import LatentcordBot

#: /usage, to a member with nothing queued, while no GPU worker is online.
NOBODY_TO_RUN_JOBS = "No GPU worker is online yet; a job you ask for waits until one is."


class Usage(commands.Cog):
    def __init__(self, bot: LatentcordBot) -> None:
        self.bot = bot

    @app_commands.command(name="usage", description="Your credits used and left, and your queued jobs.")
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=False)
    async def usage(self, interaction: discord.Interaction[Any]) -> None:
        origin = origin_of(interaction)
        usage, limit = await self.bot.moderation.credits_of(origin.quota_guild, origin.user_id, origin.role_ids)
        lines = [describe_usage(usage, limit, self.bot.clock())]
        waiting = self.bot.service.waiting_jobs(origin.user_id)
        if waiting:
            lines.append("Your jobs in the queue:")
            for job in waiting:
                where = "running now" if job.position == 0 else f"position {job.position}"
                lines.append(f"• job {job.job_id} ({where}, {credits(job.cost)}): {job.prompt[:80]}")
        else:
            lines.append("You have no jobs in the queue.")
        waiting_reason = self.bot.service.waiting_reason()
        if waiting_reason is not None:
            lines.append(waiting_reason if waiting else NOBODY_TO_RUN_JOBS)
        await reply_ephemeral(interaction, "\n".join(lines))


async def setup(bot: LatentcordBot) -> None:
    await bot.add_cog(Usage(bot))

"""/starboard: results reaching a threshold of ⭐ are reposted once to a channel, with a link to the original.

The requester's own star does not count; a star taken away never deletes the repost. The starboard
channel's NSFW rules apply: a result made where NSFW was allowed is reposted with its image only to an
age-restricted channel, elsewhere as the link alone (``bot.jobs.starboard`` says which, and why).
"""

from __future__ import annotations

import io
import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.jobs.messages import fit_content
from bot.jobs.starboard import DEFAULT_THRESHOLD, MAX_THRESHOLD, Repost, StarboardClaim
from cogs._shared.channels import messageable_channel
from cogs._shared.moderators import guild_of, moderators_only
from cogs.moderation._base import ModeratorCommands

log = logging.getLogger(__name__)

STAR = "⭐"
Channel = discord.TextChannel | discord.Thread | discord.VoiceChannel | discord.StageChannel


def repost_text(repost: Repost) -> str:
    """The repost's line ("⭐ 5 · <@member>'s result (job 12) in <#channel>: <link>"), and why it has no image."""
    job = repost.job
    link = f"https://discord.com/channels/{repost.claim.guild_id}/{job.channel_id}/{job.result_message_id}"
    text = f"{STAR} **{repost.claim.stars}** · <@{job.user_id}>'s result (job {job.id}) in <#{job.channel_id}>: {link}"
    if repost.link_only_because:
        text += f"\n({repost.link_only_because})"
    return fit_content(text)


class StarboardCommands(ModeratorCommands):
    @app_commands.command(name="starboard", description="Repost results that reach a number of ⭐ to a channel.")
    @app_commands.describe(
        channel="Where results are reposted",
        threshold=f"The ⭐ a result needs, its requester's not counted (default {DEFAULT_THRESHOLD})",
    )
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.guild_only()
    @moderators_only()
    async def starboard(
        self,
        interaction: discord.Interaction[Any],
        channel: Channel,
        threshold: app_commands.Range[int, 1, MAX_THRESHOLD] = DEFAULT_THRESHOLD,
    ) -> None:
        entry = await self.moderation.set_starboard(
            guild_of(interaction), channel.id, threshold, actor_id=interaction.user.id
        )
        stars = "star" if threshold == 1 else "stars"
        reply = (
            f"Results that reach {threshold} ⭐ {stars} (their requester's own not counted) are now reposted to "
            f"<#{channel.id}>, once each, with a link to the original."
        )
        await self._changed(interaction, entry, reply)

    # -- ⭐ given and taken away ----------------------------------------------------------------

    @commands.Cog.listener("on_raw_reaction_add")
    async def starboard_star_added(self, payload: discord.RawReactionActionEvent) -> None:
        await self._starboard_star(payload, starred=True)

    @commands.Cog.listener("on_raw_reaction_remove")
    async def starboard_star_removed(self, payload: discord.RawReactionActionEvent) -> None:
        await self._starboard_star(payload, starred=False)

    async def _starboard_star(self, payload: discord.RawReactionActionEvent, *, starred: bool) -> None:
        me = self.bot.user.id if self.bot.user else None
        if payload.guild_id is None or payload.emoji.name != STAR or payload.user_id == me:
            return
        if payload.member is not None and payload.member.bot:
            return
        if payload.message_author_id is not None and payload.message_author_id != me:
            return
        claim = await self.bot.service.starboard.star(payload.message_id, payload.user_id, starred=starred)
        if claim is not None:
            await self._repost(claim)

    async def _repost(self, claim: StarboardClaim) -> None:
        """Post the claimed result to the starboard; give the claim back if that cannot be done."""
        starboard = self.bot.service.starboard
        try:
            channel = await messageable_channel(self.bot, claim.channel_id)
            repost = None
            if channel is not None:
                is_nsfw = getattr(channel, "is_nsfw", None)
                repost = await starboard.repost(claim, age_restricted=bool(is_nsfw and is_nsfw()))
            if channel is None or repost is None:
                log.warning("the starboard channel %s of guild %s takes no reposts", claim.channel_id, claim.guild_id)
                await starboard.not_posted(claim.job_id)
                return
            text, nobody = repost_text(repost), discord.AllowedMentions.none()
            if repost.grid is None:
                message = await channel.send(text, allowed_mentions=nobody)
            else:
                grid = discord.File(io.BytesIO(repost.grid.data), repost.grid.filename)
                message = await channel.send(text, file=grid, allowed_mentions=nobody)
        except discord.HTTPException:
            log.warning("could not repost job %s to the starboard", claim.job_id, exc_info=True)
            await starboard.not_posted(claim.job_id)
            return
        await starboard.posted(claim.job_id, message.id)

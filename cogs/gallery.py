"""/gallery, and results deleted in Discord.

* ``/gallery`` (ephemeral) answers with the link to this server's web gallery (``bot.web``), or says
  that the bot's owner has not turned it on; in a direct message, the link to the member's galleries.
* A message deleted in Discord (by anyone's client, or in a moderator's bulk delete) that held a result,
  and every result of a channel or thread that is deleted, is deleted as its Delete button would delete it:
  the gallery no longer shows it, and the member's picture it started from goes once nothing needs it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from cogs._shared.replies import reply_ephemeral

if TYPE_CHECKING:
    from bot.app import LatentcordBot

log = logging.getLogger(__name__)

GALLERY_OFF = (
    "This bot has no web gallery: its owner can turn it on with WEB_PORT, WEB_PUBLIC_URL and DISCORD_CLIENT_SECRET."
)


def gallery_text(url: str, *, guild_name: str | None, age_restricted: bool) -> str:
    """The answer of /gallery: the link, and what the gallery leaves out."""
    if guild_name is None:
        return f"Your servers' galleries: {url}\nSign in with Discord to see the servers you share with the bot."
    text = (
        f"**{discord.utils.escape_markdown(guild_name)}**'s gallery: {url}\n"
        "Sign in with Discord; only this server's members see it. Results deleted in Discord, images held back "
        "by the NSFW classifier and anything made in an age-restricted channel are never shown."
    )
    if age_restricted:
        text += " What you make in this channel stays out of it."
    return text


class Gallery(commands.Cog):
    def __init__(self, bot: LatentcordBot) -> None:
        self.bot = bot

    @app_commands.command(name="gallery", description="The link to this server's gallery of images on the web.")
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=False)
    async def gallery(self, interaction: discord.Interaction[Any]) -> None:
        base = self.bot.settings.gallery_url
        if base is None:
            await reply_ephemeral(interaction, GALLERY_OFF)
            return
        guild = interaction.guild
        if guild is None:
            await reply_ephemeral(interaction, gallery_text(f"{base}/", guild_name=None, age_restricted=False))
            return
        channel = interaction.channel
        checked = getattr(channel, "parent", None) if isinstance(channel, discord.Thread) else channel
        is_nsfw = getattr(checked, "is_nsfw", None)
        text = gallery_text(
            f"{base}/g/{guild.id}", guild_name=guild.name, age_restricted=bool(callable(is_nsfw) and is_nsfw())
        )
        await reply_ephemeral(interaction, text)

    @commands.Cog.listener("on_ready")
    async def on_ready(self) -> None:
        """Jobs from before the gallery recorded where they were made: their channels, as Discord has them now."""
        channels: dict[int, bool] = {}
        for guild in self.bot.guilds:
            for channel in (*guild.channels, *guild.threads):
                is_nsfw = getattr(channel, "is_nsfw", None)
                if callable(is_nsfw):
                    channels[channel.id] = bool(is_nsfw())
        learned = await self.bot.service.learn_age_restricted(channels)
        if learned:
            log.info("learned where %d older jobs were made (age-restricted or not) for the gallery", learned)

    @commands.Cog.listener("on_raw_message_delete")
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        if payload.guild_id is not None:
            await self._deleted([payload.message_id])

    @commands.Cog.listener("on_raw_bulk_message_delete")
    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        if payload.guild_id is not None:
            await self._deleted(sorted(payload.message_ids))

    @commands.Cog.listener("on_guild_channel_delete")
    async def on_guild_channel_delete(self, channel: discord.abc.GuildChannel) -> None:
        await self._channel_deleted(channel.id)

    @commands.Cog.listener("on_raw_thread_delete")
    async def on_raw_thread_delete(self, payload: discord.RawThreadDeleteEvent) -> None:
        await self._channel_deleted(payload.thread_id)

    async def _deleted(self, message_ids: list[int]) -> None:
        deleted = await self.bot.service.results_message_deleted(message_ids)
        if deleted:
            log.info("results deleted in Discord: jobs %s", deleted)

    async def _channel_deleted(self, channel_id: int) -> None:
        """Discord sends no message delete for the messages of a deleted channel: its results go with it."""
        deleted = await self.bot.service.results_channel_deleted(channel_id)
        if deleted:
            log.info("results deleted with their channel %s: jobs %s", channel_id, deleted)


async def setup(bot: LatentcordBot) -> None:
    await bot.add_cog(Gallery(bot))

"""Reactions on results: ✉️ sends the reacting member the images and their parameters, ❌ deletes.

✉️ from anyone: a direct message with the result's images, its seeds and its full parameters
(the PNG ``parameters`` text). When their direct messages are closed, the channel is told in one
message that deletes itself after a minute. ❌ from the requester or a moderator deletes the
result, like its Delete button; from anyone else it does nothing. A result is known by the
Delete button it carries (``lc:del:<job>``), so results posted before a restart, and by ``/show``,
work too. Only reaction events are needed: no message content.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import discord

from bot.images.encoding import DISCORD_UPLOAD_LIMIT, EncodedImage
from bot.images.metadata import fit_upload, infotext
from bot.jobs.messages import fit_content
from cogs._shared.channels import messageable_channel
from cogs.imagine._buttons import ButtonAction

if TYPE_CHECKING:
    from bot.app import LatentcordBot
    from bot.jobs.recipe import Recipe

log = logging.getLogger(__name__)

ENVELOPE = frozenset({"✉️", "✉", "📧", "📨"})
CROSS = frozenset({"❌"})
DM_CLOSED_NOTICE_S = 60


def job_of(message: discord.Message, me: int) -> int | None:
    """The job whose result ``message`` is (one of the bot's, carrying the job's Delete button)."""
    if message.author.id != me:
        return None
    prefix = f"lc:{ButtonAction.DELETE}:"
    for row in message.components:
        if not isinstance(row, discord.ActionRow):
            continue
        for child in row.children:
            custom_id = getattr(child, "custom_id", None) or ""
            if custom_id.startswith(prefix):
                return int(custom_id.split(":")[2])
    return None


class Reactions:
    def __init__(self, bot: LatentcordBot) -> None:
        self.bot = bot

    async def on_reaction(self, payload: discord.RawReactionActionEvent) -> None:
        me = self.bot.user.id if self.bot.user else None
        name = payload.emoji.name or ""
        if payload.user_id == me or name not in ENVELOPE | CROSS:
            return
        if payload.message_author_id is not None and payload.message_author_id != me:
            return
        try:
            channel = await messageable_channel(self.bot, payload.channel_id)
            if channel is None:
                return
            message = await channel.fetch_message(payload.message_id)
        except discord.HTTPException:
            log.info("could not read the message reacted to (%s)", payload.message_id, exc_info=True)
            return
        job_id = job_of(message, me or 0)
        if job_id is None:
            return
        job = await self.bot.service.job(job_id)
        if job is None:
            return
        if name in CROSS:
            moderates = _moderates(payload.member)
            if payload.user_id == job.user_id or moderates:
                try:
                    await message.delete()
                except discord.HTTPException:
                    log.info("could not delete the result of job %s", job_id, exc_info=True)
                    return
                await self.bot.service.result_deleted(
                    job_id, message.id, actor_id=payload.user_id, is_moderator=moderates
                )
            return
        await self._send_by_dm(payload.user_id, job, channel)

    async def _send_by_dm(self, user_id: int, job: Any, channel: discord.abc.Messageable) -> None:
        recipe = job.recipe
        paths = await self.bot.service.image_files(job)
        images = await asyncio.to_thread(_read_images, job.id, recipe, paths, frozenset(job.withheld))
        files = [discord.File(io.BytesIO(image.data), filename=image.filename) for image in images]
        text = f"Job {job.id}, seeds {', '.join(str(seed) for seed in recipe.seeds)}:\n```\n{infotext(recipe)}\n```"
        try:
            user = self.bot.get_user(user_id) or await self.bot.fetch_user(user_id)
            await user.send(fit_content(text), files=files[:10])
        except discord.Forbidden:
            await channel.send(
                f"<@{user_id}>, I could not send you a direct message: your DMs from this server are closed.",
                delete_after=DM_CLOSED_NOTICE_S,
                allowed_mentions=discord.AllowedMentions(users=True),
            )
        except discord.HTTPException:
            log.warning("could not send job %s by direct message", job.id, exc_info=True)


def _read_images(job_id: int, recipe: Recipe, paths: Sequence[Path], withheld: frozenset[int]) -> list[EncodedImage]:
    """The job's images that were delivered and are still on disk, named for the DM and each fitted to upload."""
    images = []
    for index, path in enumerate(paths):
        if index in withheld:
            continue
        try:
            kept = EncodedImage(path.read_bytes(), f"latentcord-{job_id}-{index + 1}{path.suffix}", "image/png")
        except OSError:
            continue
        images.append(fit_upload(kept, recipe.with_seeds((recipe.seeds[index],)), DISCORD_UPLOAD_LIMIT))
    return images


def _moderates(member: discord.Member | None) -> bool:
    if member is None:
        return False
    permissions = member.guild_permissions
    return permissions.manage_guild or permissions.administrator

"""/privacy export and /privacy delete: a member's own images and prompts, sent to them or deleted.

* ``/privacy export`` sends the member, by direct message, zips of their images and a ``jobs.json`` of
  their jobs (each zip under Discord's upload limit); when their DMs are closed they are told ephemerally.
* ``/privacy delete`` asks first (ephemeral **Yes, delete** / **No**). On Yes their queued jobs are
  cancelled, their images deleted from disk, their prompts cleared from the jobs (rows kept anonymised
  for the ledger and the audit log), their preferences deleted; each server they used the bot in gets an
  audit entry and a line in its mod log saying that a deletion happened, never what was deleted. The
  buttons name the member (``lc-privacy:<user>:<yes|no>``), so an answer after a restart still works.
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import send_ephemeral
from cogs._shared.confirm import choice_button
from cogs._shared.moderators import post_to_modlog
from cogs._shared.replies import reply_ephemeral

if TYPE_CHECKING:
    from bot.app import LatentcordBot

log = logging.getLogger(__name__)

QUESTION = (
    "Delete your data? Your images are deleted from the bot's disk and never shown in a gallery again, your "
    "prompts are cleared from your jobs (their rows stay, without them, so everyone's usage adds up), your "
    "preferences are deleted, and your jobs still waiting are cancelled. This cannot be undone."
)
KEPT = "Nothing was deleted."
DMS_CLOSED = "I could not send you a direct message: allow direct messages from this server's members, then try again."


def deleted_text(jobs: int) -> str:
    return (
        f"Your data is deleted: the images and prompts of your {jobs} job{'s' if jobs != 1 else ''}, "
        "and your preferences."
    )


def modlog_text(user_id: int) -> str:
    """What a server's moderators are told: that it happened, not what was deleted."""
    return f"🗑️ <@{user_id}> deleted their data from the bot (/privacy delete)."


class PrivacyButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"lc-privacy:(?P<user>[0-9]+):(?P<choice>yes|no)"
):
    def __init__(self, user_id: int, choice: str) -> None:
        super().__init__(
            choice_button(
                f"lc-privacy:{user_id}:{choice}", choice, yes="Yes, delete", yes_style=discord.ButtonStyle.danger
            )
        )
        self.user_id, self.choice = user_id, choice

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: Any, /
    ) -> PrivacyButton:
        return cls(int(match["user"]), match["choice"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        cog = interaction.client.get_cog("Privacy")
        if not isinstance(cog, Privacy):
            await send_ephemeral(interaction, "The bot is starting up; run /privacy delete again in a moment.")
            return
        try:
            await cog.answer(interaction, self.user_id, self.choice)
        except Exception as error:
            await interaction.client.report_error(interaction, error)


class Privacy(commands.Cog):
    privacy = app_commands.Group(
        name="privacy",
        description="Your images and prompts: export or delete them.",
        allowed_contexts=app_commands.AppCommandContext(guild=True, dm_channel=True, private_channel=False),
    )

    def __init__(self, bot: LatentcordBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(PrivacyButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(PrivacyButton)

    @privacy.command(name="export", description="Get your images and a JSON of your jobs by direct message.")
    async def export(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        exported = await self.bot.service.privacy.export(interaction.user.id)
        count = len(exported.parts)
        try:
            for number, part in enumerate(exported.parts, 1):
                of = f" (part {number} of {count})" if count > 1 else ""
                await interaction.user.send(
                    f"Your Latentcord data{of}: {exported.jobs} jobs, {exported.images} images.",
                    file=discord.File(io.BytesIO(part.data), filename=part.filename),
                )
        except discord.Forbidden:
            await interaction.followup.send(DMS_CLOSED, ephemeral=True)
            return
        text = f"Sent you {count} zip{'s' if count > 1 else ''} by direct message: {exported.jobs} jobs, "
        text += f"{exported.images} images and jobs.json."
        if exported.left_out:
            text += f" {exported.left_out} images were too large for Discord's upload limit and were left out."
        await interaction.followup.send(text, ephemeral=True)

    @privacy.command(name="delete", description="Delete your images, prompts and preferences (asks first).")
    async def delete(self, interaction: discord.Interaction[Any]) -> None:
        view = discord.ui.View(timeout=None)
        view.add_item(PrivacyButton(interaction.user.id, "yes"))
        view.add_item(PrivacyButton(interaction.user.id, "no"))
        await reply_ephemeral(interaction, QUESTION, view=view)

    async def answer(self, interaction: discord.Interaction[Any], user_id: int, choice: str) -> None:
        if interaction.user.id != user_id:
            await send_ephemeral(interaction, "Only the member who asked can answer this.")
            return
        if interaction.message is not None and not interaction.message.components:
            # A second press from a client that still showed the buttons: the first answer stands.
            await send_ephemeral(interaction, "This question was already answered.")
            return
        if choice != "yes":
            await interaction.response.edit_message(content=KEPT, view=None)
            return
        await interaction.response.edit_message(content="Deleting your data…", view=None)
        deleted = await self.bot.service.privacy.delete(user_id)
        await interaction.edit_original_response(content=deleted_text(deleted.jobs))
        for guild_id in deleted.guild_ids:
            await post_to_modlog(self.bot, guild_id, modlog_text(user_id))


async def setup(bot: LatentcordBot) -> None:
    await bot.add_cog(Privacy(bot))

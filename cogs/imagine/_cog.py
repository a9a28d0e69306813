"""The Imagine cog: /imagine, the buttons' presses, and the deliveries it keeps while loaded."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import send_ephemeral
from bot.jobs.messages import CHOICE_TEXT_LIMIT, STRING_OPTION_LIMIT, fit_select_options
from bot.jobs.recipe import MAX_SEED
from bot.jobs.requests import ASPECT_RATIOS, MAX_COUNT, MAX_GUIDANCE, MAX_STEPS, ImagineOptions
from cogs._shared.moderators import is_moderator
from cogs._shared.origin import origin_of
from cogs._shared.replies import reply_ephemeral
from cogs.imagine._admission import admit, button_start
from cogs.imagine._buttons import ButtonAction
from cogs.imagine._delivery import Deliveries
from cogs.imagine._resumed import ResumedJobs

if TYPE_CHECKING:
    from bot.app import LatentcordBot


class Imagine(commands.Cog):
    # The buttons find this cog by its name, "Imagine".

    def __init__(self, bot: LatentcordBot) -> None:
        self.bot = bot
        self.service = bot.service
        self._deliveries = Deliveries(bot)
        self._resumed = ResumedJobs(bot, self._deliveries)

    async def cog_load(self) -> None:
        self.service.add_listener(self._resumed.on_event)
        self._deliveries.spawn(self._resumed.redeliver_after_restart(), name="redeliver-after-restart")

    async def cog_unload(self) -> None:
        """On shutdown, a result being posted gets a moment to land; anything left is posted on the next start."""
        self.service.remove_listener(self._resumed.on_event)
        await self._deliveries.close()

    # -- /imagine ----------------------------------------------------------------------

    @app_commands.command(name="imagine", description="Draw four images from a prompt.")
    @app_commands.describe(
        prompt="What to draw; flags such as --ar 16:9 --seed 42 --no text work here too",
        negative="What to keep out of the image",
        aspect="Aspect ratio (default 1:1)",
        seed="Seed of the first image; the others use the next seeds",
        steps="Denoising steps (default: the model's)",
        guidance="How closely to follow the prompt (default: the model's)",
        model="Which model to use",
        count="How many images (default 4)",
    )
    @app_commands.choices(aspect=[app_commands.Choice(name=ratio, value=ratio) for ratio in ASPECT_RATIOS])
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=False)
    async def imagine(
        self,
        interaction: discord.Interaction[LatentcordBot],
        # Discord's own cap; the server's PROMPT_MAX_CHARS is checked by the service, with a sentence.
        prompt: app_commands.Range[str, 1, STRING_OPTION_LIMIT],
        negative: app_commands.Range[str, 1, STRING_OPTION_LIMIT] | None = None,
        aspect: app_commands.Choice[str] | None = None,
        seed: app_commands.Range[int, 0, MAX_SEED] | None = None,
        steps: app_commands.Range[int, 1, MAX_STEPS] | None = None,
        guidance: app_commands.Range[float, 0.0, MAX_GUIDANCE] | None = None,
        model: str | None = None,
        count: app_commands.Range[int, 1, MAX_COUNT] | None = None,
    ) -> None:
        if interaction.guild_id is None and not self.bot.settings.allow_dms:
            await reply_ephemeral(interaction, "/imagine is turned off in direct messages; use it in a server.")
            return
        options = ImagineOptions(
            prompt=prompt,
            negative=negative,
            aspect=aspect.value if aspect else None,
            seed=seed,
            steps=steps,
            guidance=guidance,
            model=model,
            count=count,
        )
        await admit(
            self.bot,
            self._deliveries,
            interaction,
            lambda listener: self.service.imagine(options, origin_of(interaction), listener),
        )

    @imagine.autocomplete("model")
    async def _model_autocomplete(
        self, interaction: discord.Interaction[LatentcordBot], current: str
    ) -> list[app_commands.Choice[str]]:
        typed = current.casefold()
        # A name longer than a choice may carry could not come back intact: leave it out rather than cut it.
        models = [
            name for name in self.bot.settings.models if typed in name.casefold() and len(name) <= CHOICE_TEXT_LIMIT
        ]
        return fit_select_options([app_commands.Choice(name=name, value=name) for name in models])

    # -- buttons (``JobButton`` calls here) ----------------------------------------------

    async def handle_button(self, interaction: discord.Interaction[Any], pressed: str, job_id: int, n: int) -> None:
        try:
            action = ButtonAction(pressed)
        except ValueError:
            await send_ephemeral(interaction, "This button is from a newer or older version of the bot.")
            return
        if action == ButtonAction.CANCEL:
            await self.service.cancel(job_id, actor_id=interaction.user.id, is_moderator=is_moderator(interaction))
            await reply_ephemeral(interaction, "Cancelled; its credits were refunded.")
            return
        if action == ButtonAction.DELETE:
            await self._delete_result(interaction, job_id)
            return
        start = button_start(self.service, action, job_id, n, origin_of(interaction))
        if start is None:
            await send_ephemeral(interaction, "This button is from a newer or older version of the bot.")
            return
        await admit(self.bot, self._deliveries, interaction, start)

    async def _delete_result(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        job = await self.service.job(job_id)
        if job is not None and job.user_id != interaction.user.id and not is_moderator(interaction):
            await reply_ephemeral(interaction, "Only the person who asked for this image or a moderator can delete it.")
            return
        await interaction.response.defer()
        if interaction.message is not None:
            try:
                await interaction.message.delete()
            except discord.HTTPException:
                await interaction.followup.send("I could not delete that message.", ephemeral=True)

"""The Imagine cog: /imagine, /edit, the buttons' presses, and the deliveries it keeps while loaded."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import send_ephemeral
from bot.errors import InvalidRequest
from bot.images.uploads import check_attachment
from bot.jobs.messages import CHOICE_TEXT_LIMIT, fit_content, fit_select_options
from bot.jobs.options import (
    COUNT,
    GUIDANCE,
    LORA,
    MOOD,
    NEGATIVE,
    OPTIONS,
    PROMPT,
    SEED,
    STEPS,
    STRENGTH,
    STYLE,
    TextOption,
)
from bot.jobs.outcomes import ServiceListener, SubmittedJob
from bot.jobs.requests import ImagineOptions
from cogs._shared.moderators import is_moderator
from cogs._shared.origin import origin_of
from cogs._shared.replies import reply_ephemeral
from cogs.imagine._admission import Start, admit, button_start, edit_start
from cogs.imagine._buttons import REMIXABLE, ButtonAction
from cogs.imagine._delivery import Deliveries, grid_file, result_message
from cogs.imagine._edit import EditModal, EditRequest, edit_custom_id, edit_request
from cogs.imagine._plans import Plan, Plans
from cogs.imagine._reactions import Reactions
from cogs.imagine._remix import (
    REGION_ACTION_PREFIX,
    REGION_QUESTION,
    RemixModal,
    RemixRequest,
    region_action,
    region_menu,
    region_of,
    remix_custom_id,
    remix_request,
)
from cogs.imagine._resumed import ResumedJobs
from cogs.imagine._wording import headline

if TYPE_CHECKING:
    from bot.app import LatentcordBot

#: /imagine's fixed choices, from the option table.
IMAGINE_CHOICES: dict[str, list[app_commands.Choice[str]]] = {
    option.name: [app_commands.Choice(name=choice, value=choice) for choice in option.choices]
    for option in OPTIONS.values()
    if option.slash and isinstance(option, TextOption) and option.choices
}


class Imagine(commands.Cog):
    # The buttons find this cog by its name, "Imagine".

    def __init__(self, bot: LatentcordBot) -> None:
        self.bot = bot
        self.service = bot.service
        self._deliveries = Deliveries(bot)
        self._resumed = ResumedJobs(bot, self._deliveries)
        self.plans = Plans(bot)
        self._reactions = Reactions(bot)
        # A message's context menu cannot be a method of a cog: it is made here and added to the tree on load.
        self._describe_menu = app_commands.ContextMenu(name="Describe image", callback=self._describe_message)
        self._describe_menu.allowed_contexts = app_commands.AppCommandContext(guild=True, dm_channel=True)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self._describe_menu)
        self.service.add_listener(self._resumed.on_event)
        self._deliveries.spawn(self._resumed.redeliver_after_restart(), name="redeliver-after-restart")

    async def cog_unload(self) -> None:
        """On shutdown, a result being posted gets a moment to land; anything left is posted on the next start."""
        self.bot.tree.remove_command(self._describe_menu.name, type=self._describe_menu.type)
        self.service.remove_listener(self._resumed.on_event)
        await self._deliveries.close()

    # -- /imagine ----------------------------------------------------------------------

    @app_commands.command(name="imagine", description="Draw four images from a prompt.")
    # Descriptions, choices and bounds are the option table's (bot.jobs.options); discord.py reads the
    # parameters from the signature, which tests/test_options.py holds to the table both ways.
    @app_commands.describe(**{option.name: option.description for option in OPTIONS.values() if option.slash})
    @app_commands.choices(**IMAGINE_CHOICES)
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=False)
    async def imagine(
        self,
        interaction: discord.Interaction[LatentcordBot],
        prompt: app_commands.Range[str, 1, PROMPT.max_length],
        negative: app_commands.Range[str, 1, NEGATIVE.max_length] | None = None,
        aspect: app_commands.Choice[str] | None = None,
        seed: app_commands.Range[int, SEED.low, SEED.high] | None = None,
        steps: app_commands.Range[int, STEPS.low, STEPS.high] | None = None,
        guidance: app_commands.Range[float, GUIDANCE.low, GUIDANCE.high] | None = None,
        model: str | None = None,
        count: app_commands.Range[int, COUNT.low, COUNT.high] | None = None,
        image: discord.Attachment | None = None,
        strength: app_commands.Range[float, STRENGTH.low, STRENGTH.high] | None = None,
        lora: app_commands.Range[str, 1, LORA.max_length] | None = None,
        style: app_commands.Range[str, 1, STYLE.max_length] | None = None,
        reference: discord.Attachment | None = None,
        reference2: discord.Attachment | None = None,
        reference3: discord.Attachment | None = None,
        mood: app_commands.Range[str, 1, MOOD.max_length] | None = None,
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
            strength=strength,
            lora=lora,
            style=style,
            mood=mood,
        )
        origin = origin_of(interaction)
        given = [attachment for attachment in (reference, reference2, reference3) if attachment is not None]
        jobs = await self.service.expand(options, origin)  # {a, b} permutations and --repeat
        if len(jobs) > 1:
            if given:
                raise InvalidRequest(
                    "Reference pictures go with one job at a time: leave out the {a, b} choices or --repeat."
                )
            picture = await self._picture(image)
            await self.plans.ask(interaction, Plan(interaction.user.id, origin, tuple(jobs), picture))
            return
        options = jobs[0]

        async def start(listener: ServiceListener) -> SubmittedJob:
            # Refused on what Discord says of it before it is downloaded; decoded by the service, off the loop.
            picture = await self._picture(image)
            references = await self._pictures(given)
            return await self.service.imagine(options, origin, listener, picture=picture, references=references)

        await admit(self.bot, self._deliveries, interaction, start)

    # -- /edit -------------------------------------------------------------------------

    @app_commands.command(name="edit", description="Change a picture as you say, with up to two more as references.")
    @app_commands.describe(
        instruction='What to change, such as "make it night" (--seed, --steps, --mood and --ref work here too)',
        image="The picture to change (PNG, JPEG or WebP, up to 10 MB)",
        image2='A second picture, as a reference: "put the cat from image 2 on the sofa"',
        image3="A third picture, as a reference",
        model="Which edit-capable model to use (default: the server's)",
        mood=MOOD.description,
    )
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=False)
    async def edit(
        self,
        interaction: discord.Interaction[LatentcordBot],
        instruction: app_commands.Range[str, 1, PROMPT.max_length],
        image: discord.Attachment,
        image2: discord.Attachment | None = None,
        image3: discord.Attachment | None = None,
        model: str | None = None,
        mood: app_commands.Range[str, 1, MOOD.max_length] | None = None,
    ) -> None:
        if interaction.guild_id is None and not self.bot.settings.allow_dms:
            await reply_ephemeral(interaction, "/edit is turned off in direct messages; use it in a server.")
            return
        origin = origin_of(interaction)
        given = [attachment for attachment in (image, image2, image3) if attachment is not None]

        async def start(listener: ServiceListener) -> SubmittedJob:
            pictures = await self._pictures(given)
            return await self.service.edit_pictures(instruction, pictures, origin, listener, model=model, mood=mood)

        await admit(self.bot, self._deliveries, interaction, start)

    # -- /describe and the Describe image menu ----------------------------------------------

    @app_commands.command(name="describe", description="Four prompts that describe a picture, to start from.")
    @app_commands.describe(image="The picture to describe (PNG, JPEG or WebP, up to 10 MB)")
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=False)
    async def describe(self, interaction: discord.Interaction[LatentcordBot], image: discord.Attachment) -> None:
        await self._describe(interaction, image)

    async def _describe_message(
        self, interaction: discord.Interaction[LatentcordBot], message: discord.Message
    ) -> None:
        """The message menu's Describe image: the first picture the message holds."""
        picture = next((item for item in message.attachments if _is_picture(item)), None)
        if picture is None:
            await reply_ephemeral(
                interaction, "That message holds no picture to describe: use it on one with an image."
            )
            return
        await self._describe(interaction, picture)

    async def _describe(self, interaction: discord.Interaction[LatentcordBot], image: discord.Attachment) -> None:
        if interaction.guild_id is None and not self.bot.settings.allow_dms:
            await reply_ephemeral(interaction, "/describe is turned off in direct messages; use it in a server.")
            return
        origin = origin_of(interaction)

        async def start(listener: ServiceListener) -> SubmittedJob:
            picture = await self._picture(image)
            assert picture is not None
            return await self.service.describe(picture, origin, listener)

        await admit(self.bot, self._deliveries, interaction, start)

    async def _pictures(self, attachments: list[discord.Attachment]) -> list[bytes]:
        """Each picture refused on what Discord says of it before any is downloaded, then each downloaded."""
        for attachment in attachments:
            check_attachment(attachment.filename, attachment.content_type, attachment.size)
        return [picture for attachment in attachments if (picture := await self._picture(attachment)) is not None]

    async def _picture(self, image: discord.Attachment | None) -> bytes | None:
        if image is None:
            return None
        check_attachment(image.filename, image.content_type, image.size)
        try:
            return await image.read()
        except discord.HTTPException:
            raise InvalidRequest("That picture could not be downloaded from Discord; attach it again.") from None

    @imagine.autocomplete("model")
    async def _model_autocomplete(
        self, interaction: discord.Interaction[LatentcordBot], current: str
    ) -> list[app_commands.Choice[str]]:
        typed = current.casefold()
        # A name longer than a choice may carry could not come back intact: leave it out rather than cut it.
        enabled = await self.service.enabled_models(interaction.guild_id)
        models = [name for name in enabled if typed in name.casefold() and len(name) <= CHOICE_TEXT_LIMIT]
        return fit_select_options([app_commands.Choice(name=name, value=name) for name in models])

    @imagine.autocomplete("style")
    async def _style_autocomplete(
        self, interaction: discord.Interaction[LatentcordBot], current: str
    ) -> list[app_commands.Choice[str]]:
        typed = current.casefold()
        styles = await self.service.styles(interaction.guild_id)
        return fit_select_options(
            [app_commands.Choice(name=item.name, value=item.name) for item in styles if typed in item.name.casefold()]
        )

    @edit.autocomplete("model")
    async def _edit_model_autocomplete(
        self, interaction: discord.Interaction[LatentcordBot], current: str
    ) -> list[app_commands.Choice[str]]:
        typed = current.casefold()
        enabled = await self.service.enabled_models(interaction.guild_id)
        models = [
            name
            for name in enabled
            if typed in name.casefold() and len(name) <= CHOICE_TEXT_LIMIT and await self.service.editing.edits(name)
        ]
        return fit_select_options([app_commands.Choice(name=name, value=name) for name in models])

    @imagine.autocomplete("mood")
    @edit.autocomplete("mood")
    async def _mood_autocomplete(
        self, interaction: discord.Interaction[LatentcordBot], current: str
    ) -> list[app_commands.Choice[str]]:
        typed = current.casefold()
        boards = await self.service.library.moodboards(interaction.guild_id)
        return fit_select_options(
            [
                app_commands.Choice(name=board.name, value=board.name)
                for board in boards
                if typed in board.name.casefold()
            ]
        )

    @imagine.autocomplete("lora")
    async def _lora_autocomplete(
        self, interaction: discord.Interaction[LatentcordBot], current: str
    ) -> list[app_commands.Choice[str]]:
        typed = current.casefold()
        loras = await self.service.fine_tunes(interaction.guild_id, "lora")
        return fit_select_options(
            [app_commands.Choice(name=item.name, value=item.name) for item in loras if typed in item.name.casefold()]
        )

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        await self._reactions.on_reaction(payload)

    # -- /show -------------------------------------------------------------------------

    @app_commands.command(name="show", description="Post one of your finished jobs again, with its buttons.")
    @app_commands.describe(job="The job's number (in its buttons, its file name and /usage)")
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=False)
    async def show(self, interaction: discord.Interaction[LatentcordBot], job: app_commands.Range[int, 1]) -> None:
        result = await self.service.shown(
            job,
            actor_id=interaction.user.id,
            guild_id=interaction.guild_id,
            is_moderator=is_moderator(interaction),
        )
        content, view = result_message(result, headline(result.recipe, result.job.user_id))
        grid = await grid_file(result, interaction.filesize_limit)
        await interaction.response.send_message(
            fit_content(content), file=grid, view=view, allowed_mentions=discord.AllowedMentions.none()
        )

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
        if action == ButtonAction.VARY_REGION:
            await reply_ephemeral(interaction, REGION_QUESTION, view=region_menu(job_id, n))
            return
        if action == ButtonAction.EDIT:
            await self._open_edit(interaction, job_id, n)
            return
        if action in REMIXABLE and await self.service.remix_enabled(interaction.user.id):
            await self._open_remix(interaction, action, job_id, n)
            return
        start = button_start(self.service, action, job_id, n, origin_of(interaction))
        if start is None:
            await send_ephemeral(interaction, "This button is from a newer or older version of the bot.")
            return
        await admit(self.bot, self._deliveries, interaction, start)

    async def handle_region(self, interaction: discord.Interaction[Any], job_id: int, n: int, mask: str) -> None:
        """A region chosen for Vary (Region): the Remix window, always, to say what goes there."""
        await self._open_remix(interaction, region_action(mask), job_id, n)

    async def _open_remix(self, interaction: discord.Interaction[Any], action: str, job_id: int, n: int) -> None:
        """The Remix window over the job's prompt; its custom id says what its submission starts."""
        job = await self.service.job(job_id)
        if job is None:
            await send_ephemeral(interaction, f"Job {job_id} does not exist (it may have been deleted).")
            return
        window = RemixModal(job.recipe.prompt, self.bot.settings.prompt_max_chars, remix_custom_id(action, job_id, n))
        await interaction.response.send_modal(window)

    async def _open_edit(self, interaction: discord.Interaction[Any], job_id: int, n: int) -> None:
        """The Edit window for image ``n`` of a job; nothing is charged until it is sent."""
        if await self.service.job(job_id) is None:
            await send_ephemeral(interaction, f"Job {job_id} does not exist (it may have been deleted).")
            return
        window = EditModal(self.bot.settings.prompt_max_chars, edit_custom_id(job_id, n))
        await interaction.response.send_modal(window)

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        """A submitted Remix or Edit window, read from its custom id: the one opened before a restart too."""
        if interaction.type is not discord.InteractionType.modal_submit:
            return
        try:
            if (request := remix_request(interaction.data)) is not None:
                await self._remixed(interaction, request)
            elif (edit := edit_request(interaction.data)) is not None:
                await self._edited(interaction, edit)
        except Exception as error:
            await self.bot.report_error(interaction, error)

    async def _edited(self, interaction: discord.Interaction[Any], request: EditRequest) -> None:
        origin = origin_of(interaction)

        async def start(listener: ServiceListener) -> SubmittedJob:
            index = max(request.n - 1, 0)
            return await self.service.edit_image(request.job_id, index, request.instruction, origin, listener)

        await admit(self.bot, self._deliveries, interaction, start)

    async def _remixed(self, interaction: discord.Interaction[Any], request: RemixRequest) -> None:
        origin, prompt = origin_of(interaction), request.prompt
        start: Start | None = None
        if request.action.startswith(REGION_ACTION_PREFIX):
            mask = region_of(request.action.removeprefix(REGION_ACTION_PREFIX))
            if mask is not None:
                start = edit_start(self.service, request.job_id, request.n, mask, origin, prompt)
        elif (action := _remixable(request.action)) is not None:
            start = button_start(self.service, action, request.job_id, request.n, origin, prompt)
        if start is None:
            await send_ephemeral(interaction, "This window is from a newer or older version of the bot.")
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
                return
            if job is not None:
                await self.service.result_deleted(
                    job_id, interaction.message.id, actor_id=interaction.user.id, is_moderator=is_moderator(interaction)
                )


def _is_picture(attachment: discord.Attachment) -> bool:
    declared = (attachment.content_type or "").split(";")[0].strip().lower()
    return declared.startswith("image/") or attachment.filename.lower().endswith((".png", ".jpg", ".jpeg", ".webp"))


def _remixable(value: str) -> ButtonAction | None:
    """The button a Remix window was opened by, if it is one that opens it."""
    try:
        action = ButtonAction(value)
    except ValueError:
        return None
    return action if action in REMIXABLE else None

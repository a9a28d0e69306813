"""/imagine and the buttons under its grids: interactions in, service calls out, events rendered back.

The cog decides before it answers: a rejected request gets an ephemeral first
response, an accepted one a public message that is edited with the queue position,
progress and preview, then the grid with its buttons. Buttons are ``DynamicItem``s
whose custom id names the job and the image, so they work after a restart.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands
from PIL import Image

from bot.app import send_ephemeral
from bot.errors import USER_FACING_ERRORS, PromptRejected
from bot.images.rendering import EncodedImage, encode_image
from bot.jobs.events import Cancelled, Failed, Progress, Queued, Started
from bot.jobs.messages import CHOICE_TEXT_LIMIT, STRING_OPTION_LIMIT, fit_content, fit_select_options
from bot.jobs.requests import ASPECT_RATIOS, MAX_COUNT, MAX_GUIDANCE, MAX_SEED, MAX_STEPS, ImagineOptions, JobKind
from bot.jobs.service import Completed, JobResult, ServiceEvent, SubmittedJob
from bot.runtime.tasks import log_failure
from cogs._shared.moderators import is_moderator, post_to_modlog
from cogs._shared.origin import origin_of

if TYPE_CHECKING:
    from bot.app import LatentcordBot

log = logging.getLogger(__name__)

# Discord gives 3 s to answer; past this much of it, answer with an ephemeral "thinking" first.
DECISION_BUDGET_S = 2.0
# Interaction tokens live 15 minutes; past this age, deliver with the bot token instead.
TOKEN_SAFE_AGE_S = 14 * 60
STRONG_VARIATION, SUBTLE_VARIATION = 0.75, 0.35

# How far back in a channel to look, after a restart, for a result posted just before a crash.
RESULT_SEARCH_DEPTH = 50
# How long a shutdown waits for results being posted at that moment.
SHUTDOWN_POST_WAIT_S = 15.0


class ButtonAction(StrEnum):
    """What a button under a job does; the value is what its custom id stores, so never change one."""

    UPSCALE = "u"
    VARIATION = "v"
    REROLL = "r"
    VARY_STRONG = "vs"
    VARY_SUBTLE = "vt"
    CANCEL = "x"
    DELETE = "del"


class ResultUndeliverable(Exception):
    """No Discord route can take a result right now (no channel, or one that takes no messages)."""


class JobButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"lc:(?P<action>[a-z]+):(?P<job>[0-9]+):(?P<n>[0-9]+)"
):
    """A button that names its job and image (``lc:u:<job>:<n>``, n from 1), so it needs no memory."""

    def __init__(
        self,
        action: ButtonAction | str,
        job_id: int,
        n: int = 0,
        *,
        label: str | None = None,
        emoji: str | None = None,
        style: discord.ButtonStyle = discord.ButtonStyle.secondary,
        disabled: bool = False,
        row: int | None = None,
    ) -> None:
        button: discord.ui.Button[Any] = discord.ui.Button(
            label=label, emoji=emoji, style=style, disabled=disabled, custom_id=self.custom_id_for(action, job_id, n)
        )
        super().__init__(button, row=row)
        self.action, self.job_id, self.n = action, job_id, n

    @staticmethod
    def custom_id_for(action: ButtonAction | str, job_id: int, n: int = 0) -> str:
        return f"lc:{action}:{job_id}:{n}"

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: Any, /
    ) -> JobButton:
        return cls(match["action"], int(match["job"]), int(match["n"]))  # checked when pressed

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        cog = interaction.client.get_cog("Imagine")
        if cog is None:
            await send_ephemeral(interaction, "The bot is starting up; press the button again in a moment.")
            return
        try:
            await cog.handle_button(interaction, self.action, self.job_id, self.n)
        except Exception as error:
            # Buttons bypass the command tree's handler, so they share it explicitly.
            await interaction.client.report_error(interaction, error)


def grid_buttons(job_id: int, images: int, withheld: frozenset[int]) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for n in range(1, images + 1):
        view.add_item(JobButton(ButtonAction.UPSCALE, job_id, n, label=f"U{n}", disabled=n - 1 in withheld, row=0))
    view.add_item(JobButton(ButtonAction.REROLL, job_id, 0, label="🔄", style=discord.ButtonStyle.primary, row=0))
    for n in range(1, images + 1):
        view.add_item(JobButton(ButtonAction.VARIATION, job_id, n, label=f"V{n}", disabled=n - 1 in withheld, row=1))
    view.add_item(
        JobButton(ButtonAction.DELETE, job_id, 0, label="Delete", emoji="🗑️", style=discord.ButtonStyle.danger, row=2)
    )
    return view


def upscale_buttons(job_id: int, withheld: bool) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton(ButtonAction.VARY_STRONG, job_id, 1, label="Vary (Strong)", disabled=withheld, row=0))
    view.add_item(JobButton(ButtonAction.VARY_SUBTLE, job_id, 1, label="Vary (Subtle)", disabled=withheld, row=0))
    view.add_item(
        JobButton(ButtonAction.DELETE, job_id, 0, label="Delete", emoji="🗑️", style=discord.ButtonStyle.danger, row=0)
    )
    return view


def cancel_button(job_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton(ButtonAction.CANCEL, job_id, 0, label="Cancel", style=discord.ButtonStyle.secondary))
    return view


def _headline(prompt: str, user_id: int, kind: str, parent_image: int | None) -> str:
    what = {
        JobKind.UPSCALE: f" (image {(parent_image or 0) + 1} upscaled)",
        JobKind.VARIATION: f" (variations of image {(parent_image or 0) + 1})",
        JobKind.REROLL: " (re-roll)",
    }.get(JobKind(kind), "")
    shown = prompt if len(prompt) <= 300 else prompt[:297] + "…"
    # A prompt is shown, never obeyed: no formatting, and no pings of whoever it names.
    shown = discord.utils.escape_mentions(discord.utils.escape_markdown(shown))
    return f"**{shown}**{what} — <@{user_id}>"


def _bar(step: int, total: int, width: int = 10) -> str:
    filled = round(width * step / max(total, 1))
    return "▰" * filled + "▱" * (width - filled)


@dataclass(slots=True, eq=False)
class Delivery:
    """Where one job's messages go, while its interaction token is young enough to edit them."""

    interaction: discord.Interaction[Any]
    headline: str
    edit: Callable[..., Awaitable[Any]] | None = None
    message_id: int | None = None
    inbox: asyncio.Queue[ServiceEvent] = field(default_factory=asyncio.Queue)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    last_edit_at: float = float("-inf")


class Imagine(commands.Cog):
    def __init__(self, bot: LatentcordBot) -> None:
        self.bot = bot
        self.service = bot.service
        self._tasks: set[asyncio.Task[None]] = set()
        self._posting: set[asyncio.Task[Any]] = set()  # deliveries in the middle of a try, not backing off
        self._resumed: set[int] = set()  # resumed jobs whose status message says so already
        self._restate_lock = asyncio.Lock()

    async def cog_load(self) -> None:
        self.service.add_listener(self._on_unowned_event)
        self._track(asyncio.create_task(self._redeliver_after_restart(), name="redeliver-after-restart"))

    async def cog_unload(self) -> None:
        """On shutdown, a result being posted gets a moment to land; anything left is posted on the next start."""
        self.service.remove_listener(self._on_unowned_event)
        posting = {task for task in self._posting if not task.done()}
        if posting:
            await asyncio.wait(posting, timeout=SHUTDOWN_POST_WAIT_S)
        for task in self._tasks:
            task.cancel()

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
            await interaction.response.send_message(
                "/imagine is turned off in direct messages; use it in a server.", ephemeral=True
            )
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
        await self._admit(interaction, lambda listener: self.service.imagine(options, origin_of(interaction), listener))

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

    # -- buttons -----------------------------------------------------------------------

    async def handle_button(self, interaction: discord.Interaction[Any], pressed: str, job_id: int, n: int) -> None:
        try:
            action = ButtonAction(pressed)
        except ValueError:
            await send_ephemeral(interaction, "This button is from a newer or older version of the bot.")
            return
        origin = origin_of(interaction)
        index = max(n - 1, 0)
        if action == ButtonAction.CANCEL:
            await self.service.cancel(job_id, actor_id=interaction.user.id, is_moderator=is_moderator(interaction))
            await interaction.response.send_message("Cancelled; its credits were refunded.", ephemeral=True)
            return
        if action == ButtonAction.DELETE:
            await self._delete_result(interaction, job_id)
            return
        starters = {
            ButtonAction.UPSCALE: lambda listener: self.service.upscale(job_id, index, origin, listener),
            ButtonAction.VARIATION: lambda listener: self.service.variation(job_id, index, origin, listener),
            ButtonAction.REROLL: lambda listener: self.service.reroll(job_id, origin, listener),
            ButtonAction.VARY_STRONG: lambda listener: self.service.variation(
                job_id, index, origin, listener, strength=STRONG_VARIATION
            ),
            ButtonAction.VARY_SUBTLE: lambda listener: self.service.variation(
                job_id, index, origin, listener, strength=SUBTLE_VARIATION
            ),
        }
        if action not in starters:
            await send_ephemeral(interaction, "This button is from a newer or older version of the bot.")
            return
        await self._admit(interaction, starters[action])

    async def _delete_result(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        job = await self.service.job(job_id)
        if job is not None and job.user_id != interaction.user.id and not is_moderator(interaction):
            await interaction.response.send_message(
                "Only the person who asked for this image or a moderator can delete it.", ephemeral=True
            )
            return
        await interaction.response.defer()
        if interaction.message is not None:
            try:
                await interaction.message.delete()
            except discord.HTTPException:
                await interaction.followup.send("I could not delete that message.", ephemeral=True)

    # -- admission: decide first, then answer -----------------------------------------

    async def _admit(
        self,
        interaction: discord.Interaction[Any],
        start: Callable[[Callable[[ServiceEvent], None]], Awaitable[SubmittedJob]],
    ) -> None:
        """Run the service's checks, answering ephemerally on rejection and publicly on acceptance.

        If the checks take longer than Discord's window allows (a model loading),
        the first answer is an ephemeral "thinking", never a public one that would
        then have to say no.
        """
        delivery = Delivery(interaction=interaction, headline="")
        attempt = asyncio.ensure_future(start(delivery.inbox.put_nowait))
        done, _ = await asyncio.wait({attempt}, timeout=DECISION_BUDGET_S)
        deferred = not done
        if deferred:
            await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            submitted = await attempt
        except USER_FACING_ERRORS as error:
            await send_ephemeral(interaction, str(error))
            if isinstance(error, PromptRejected) and interaction.guild_id is not None:
                await post_to_modlog(
                    self.bot,
                    interaction.guild_id,
                    f"🚫 Prompt from <@{interaction.user.id}> rejected in <#{interaction.channel_id}>: "
                    f"{error.rule or error}",
                )
            return
        request = submitted.request
        delivery.headline = _headline(request.prompt, interaction.user.id, request.kind, request.parent_image)
        if submitted.notice:
            delivery.headline += f"\n⚠️ {submitted.notice}"
        status = f"{delivery.headline}\nQueued: position {submitted.position}"
        view = cancel_button(submitted.job_id)
        message_id: int | None = None
        try:
            if deferred:
                await interaction.edit_original_response(content=f"Accepted: job {submitted.job_id}.")
                message = await interaction.followup.send(fit_content(status), view=view, wait=True)
                delivery.edit, message_id = message.edit, message.id
            else:
                callback = await interaction.response.send_message(fit_content(status), view=view)
                delivery.edit, message_id = interaction.edit_original_response, callback.message_id
            await self.service.record_status_message(
                submitted.job_id,
                message_id=message_id,
                interaction_token=interaction.token,
                token_created_at=interaction.created_at.timestamp(),
            )
        except discord.HTTPException:
            log.warning("could not post the status of job %s; the result goes to the channel", submitted.job_id)
        delivery.message_id = message_id
        delivery.last_edit_at = self.bot.clock()
        delivery.ready.set()
        self._track(asyncio.create_task(self._follow(submitted.job_id, delivery), name=f"deliver-{submitted.job_id}"))

    # -- delivery ------------------------------------------------------------------------

    async def _follow(self, job_id: int, delivery: Delivery) -> None:
        while True:
            event = await delivery.inbox.get()
            match event:
                case Queued(position=position):
                    await self._edit_status(delivery, f"{delivery.headline}\nQueued: position {position}")
                case Started():
                    await self._edit_status(delivery, f"{delivery.headline}\nStarting…")
                case Progress(step=step, total=total, preview=preview):
                    if delivery.inbox.empty():  # a newer event is waiting: skip straight to it
                        text = f"{delivery.headline}\nGenerating {_bar(step, total)} {step}/{total}"
                        await self._edit_status(delivery, text, preview)
                case Completed(result=result):
                    await self._deliver(result, delivery)
                    return
                case Failed(message=message):
                    await self._post_text(job_id, delivery, f"{delivery.headline}\n❌ {message}")
                    return
                case Cancelled():
                    await self._post_text(job_id, delivery, f"{delivery.headline}\nCancelled; credits refunded.")
                    return

    def _fresh_edit(self, delivery: Delivery | None) -> Callable[..., Awaitable[Any]] | None:
        """How to edit the job's message while its interaction token is young enough; else ``None``."""
        if delivery is None or delivery.edit is None:
            return None
        if self.bot.clock() - delivery.interaction.created_at.timestamp() >= TOKEN_SAFE_AGE_S:
            return None
        return delivery.edit

    async def _edit_status(self, delivery: Delivery, content: str, preview: bytes | None = None) -> None:
        now = self.bot.clock()
        # PREVIEW_INTERVAL_S (about 1.5 s) keeps a job within Discord's edit rate limits.
        edit = self._fresh_edit(delivery)
        if edit is None or now - delivery.last_edit_at < self.bot.settings.preview_interval_s:
            return
        delivery.last_edit_at = now
        attachments = [discord.File(io.BytesIO(preview), "preview.png")] if preview is not None else []
        try:
            await edit(content=fit_content(content), attachments=attachments)
        except discord.HTTPException:
            log.info("could not edit a progress message", exc_info=True)

    async def _post_text(self, job_id: int, delivery: Delivery, content: str) -> None:
        if (edit := self._fresh_edit(delivery)) is not None:
            try:
                await edit(content=fit_content(content), attachments=[], view=None)
                return
            except discord.HTTPException:
                log.info("could not edit the message of job %s; posting instead", job_id, exc_info=True)
        job = await self.service.job(job_id)
        if job is not None:
            await self._send_to_channel(job.channel_id, content, None, None)

    async def _deliver(self, result: JobResult, delivery: Delivery | None) -> None:
        """Post a result until a message holds it, backing off while Discord fails, across restarts.

        The service keeps the count and the clock in SQLite; once it gives up, it has refunded
        the job, and the member is told so by whatever route still works.
        """
        job_id = result.job.id
        task = asyncio.current_task()
        assert task is not None
        self._posting.add(task)
        try:
            if delivery is None:  # after a restart: a crash may have come between posting and recording it
                posted = await self._find_posted_result(result)
                if posted is not None:
                    await self.service.delivered(job_id, posted)
                    return
            while True:
                try:
                    message_id = await self._post_result(result, delivery)
                except (discord.HTTPException, ResultUndeliverable) as error:
                    verdict = await self.service.delivery_failed(job_id)
                    if verdict.retry_in_s is None:
                        await self._tell_undelivered(result, delivery, verdict.refunded)
                        return
                    log.info(
                        "could not post the result of job %s (%s); retrying in %.0f s",
                        job_id,
                        error,
                        verdict.retry_in_s,
                    )
                    self._posting.discard(task)  # backing off: a shutdown need not wait for it
                    await asyncio.sleep(verdict.retry_in_s)
                    self._posting.add(task)
                    continue
                await self.service.delivered(job_id, message_id)
                return
        finally:
            self._posting.discard(task)

    async def _find_posted_result(self, result: JobResult) -> int | None:
        """The message already holding this job's result, if any: its status message, or a recent post.

        Every result carries a Delete button named after its job, and nothing else does.
        """
        job = result.job
        if job.channel_id is None or self.bot.user is None:
            return None
        me = self.bot.user.id
        marker = JobButton.custom_id_for(ButtonAction.DELETE, job.id)

        def holds_result(message: discord.Message) -> bool:
            return message.author.id == me and any(
                getattr(child, "custom_id", None) == marker
                for row in message.components
                if isinstance(row, discord.ActionRow)
                for child in row.children
            )

        try:
            channel = self.bot.get_channel(job.channel_id) or await self.bot.fetch_channel(job.channel_id)
            if not isinstance(channel, discord.abc.Messageable):
                return None
            if job.message_id is not None:
                try:
                    status = await channel.fetch_message(job.message_id)
                    if holds_result(status):
                        return status.id
                except discord.NotFound:
                    pass
            async for message in channel.history(limit=RESULT_SEARCH_DEPTH):
                if holds_result(message):
                    return message.id
        except discord.HTTPException:
            log.info("could not look for an earlier post of job %s; posting it", job.id, exc_info=True)
        return None

    async def _post_result(self, result: JobResult, delivery: Delivery | None) -> int | None:
        """Post the grid with its buttons; the id of the message that holds it. Raises when no route works."""
        job = result.job
        headline = delivery.headline if delivery else _headline(job.prompt, job.user_id, job.kind, job.parent_image)
        lines = [headline, self._summary(result)]
        if result.withheld:
            lines.append(
                f"{len(result.withheld)} image(s) withheld by the content filter; {result.refunded} credit(s) refunded."
            )
        if job.kind == JobKind.UPSCALE:
            view = upscale_buttons(job.id, withheld=0 in result.withheld)
        else:
            view = grid_buttons(job.id, len(result.image_paths), result.withheld)
        content = "\n".join(lines)
        if delivery is not None and (edit := self._fresh_edit(delivery)) is not None:
            try:
                edited = await edit(
                    content=fit_content(content), attachments=[await self._grid_for(result, delivery)], view=view
                )
                return getattr(edited, "id", None) or delivery.message_id
            except discord.HTTPException:
                log.info("could not edit the message of job %s; posting instead", job.id, exc_info=True)
        if job.channel_id is None:
            raise ResultUndeliverable(f"job {job.id} has no channel to post to")
        grid = await self._grid_for(result, delivery)  # a File is consumed by each send
        message = await self._channel_send(job.channel_id, content=content, file=grid, view=view)
        return message.id

    async def _tell_undelivered(self, result: JobResult, delivery: Delivery | None, refunded: int) -> None:
        """One message, by the first route that works, that the images were made but never posted."""
        job = result.job
        headline = delivery.headline if delivery else _headline(job.prompt, job.user_id, job.kind, job.parent_image)
        minutes = max(1, round(self.bot.settings.delivery_give_up_s / 60))
        notice = (
            f"{headline}\n❌ Your images were made, but Discord would not let me post them for {minutes} min; "
            f"{refunded} credit(s) were refunded."
        )
        if (edit := self._fresh_edit(delivery)) is not None:
            try:
                await edit(content=fit_content(notice), attachments=[], view=None)
                return
            except discord.HTTPException:
                pass
        if job.channel_id is not None:
            try:
                await self._channel_send(job.channel_id, content=notice)
                return
            except discord.HTTPException:
                pass
        try:
            user = self.bot.get_user(job.user_id) or await self.bot.fetch_user(job.user_id)
            await user.send(fit_content(notice))
        except discord.HTTPException:
            log.warning("could not tell user %s that job %s was refunded undelivered", job.user_id, job.id)

    async def _redeliver_after_restart(self) -> None:
        """Results finished before a restart but never posted are posted now (or refunded)."""
        await self.bot.wait_until_ready()
        for result in await self.service.undelivered_results():
            self._track(asyncio.create_task(self._deliver(result, None), name=f"redeliver-{result.job.id}"))

    @staticmethod
    def _summary(result: JobResult) -> str:
        p = result.parameters
        seeds = ", ".join(str(seed) for seed in p.seeds)
        return f"Seeds: {seeds} · {p.width}x{p.height} · {p.steps} steps · guidance {p.guidance:g} · {p.model}"

    async def _grid_for(self, result: JobResult, delivery: Delivery | None) -> discord.File:
        limit = delivery.interaction.filesize_limit if delivery else 10 * 1024 * 1024
        grid = result.grid
        if len(grid.data) > limit:

            def shrink() -> EncodedImage:
                with Image.open(io.BytesIO(grid.data)) as image:
                    return encode_image(
                        image, result.parameters, stem=grid.filename.rsplit(".", 1)[0], limit_bytes=limit
                    )

            grid = await asyncio.to_thread(shrink)
        return discord.File(io.BytesIO(grid.data), grid.filename)

    async def _channel_send(self, channel_id: int, **kwargs: Any) -> discord.Message:
        """Post with the bot token: for results older than the interaction token, or after a restart."""
        channel = self.bot.get_channel(channel_id) or await self.bot.fetch_channel(channel_id)
        if not isinstance(channel, discord.abc.Messageable):
            raise ResultUndeliverable(f"channel {channel_id} takes no messages")
        if kwargs.get("content") is not None:
            kwargs["content"] = fit_content(kwargs["content"])
        return await channel.send(**{key: value for key, value in kwargs.items() if value is not None})

    async def _send_to_channel(
        self, channel_id: int | None, content: str, file: discord.File | None, view: discord.ui.View | None
    ) -> None:
        """Best effort, for notices: a failure is logged, not retried."""
        if channel_id is None:
            return
        try:
            await self._channel_send(channel_id, content=content, file=file, view=view)
        except (discord.HTTPException, ResultUndeliverable):
            log.warning("could not post to channel %s", channel_id, exc_info=True)

    def _on_unowned_event(self, event: ServiceEvent) -> None:
        """Jobs resumed after a restart have no interaction: their results go to their channel.

        Their old status message is corrected with the bot token, so it does not
        say "Queued" forever.
        """
        if isinstance(event, Queued) and event.job_id not in self._resumed:
            self._resumed.add(event.job_id)
            status = f"Resumed after a restart: queued, position {event.position}."
            self._track(asyncio.create_task(self._restate(event.job_id, status, cancel_button(event.job_id))))
        elif isinstance(event, Completed):
            self._resumed.discard(event.job_id)
            self._track(asyncio.create_task(self._deliver(event.result, None)))
            status = "Finished after a restart: the result is below."
            self._track(asyncio.create_task(self._restate(event.job_id, status, None)))
        elif isinstance(event, Failed | Cancelled):
            self._resumed.discard(event.job_id)
            self._track(asyncio.create_task(self._post_unowned_text(event)))
            self._track(asyncio.create_task(self._restate(event.job_id, "Stopped after a restart.", None)))

    async def _restate(self, job_id: int, status: str, view: discord.ui.View | None) -> None:
        """Edit a resumed job's status message with the bot token; a missing message is no loss.

        The lock is taken before the first await: tasks start in the order they were
        created and asyncio locks are fair, so the edits land in the order of the events.
        """
        async with self._restate_lock:
            job = await self.service.job(job_id)
            if job is None or job.message_id is None or job.channel_id is None:
                return
            headline = _headline(job.prompt, job.user_id, job.kind, job.parent_image)
            try:
                channel = self.bot.get_channel(job.channel_id) or await self.bot.fetch_channel(job.channel_id)
                if not isinstance(channel, discord.abc.Messageable):
                    return
                message = await channel.fetch_message(job.message_id)
                await message.edit(content=fit_content(f"{headline}\n{status}"), view=view)
            except discord.HTTPException:
                log.info("could not update the status message of resumed job %s", job_id, exc_info=True)

    async def _post_unowned_text(self, event: Failed | Cancelled) -> None:
        job = await self.service.job(event.job_id)
        if job is None:
            return
        headline = _headline(job.prompt, job.user_id, job.kind, job.parent_image)
        reason = event.message if isinstance(event, Failed) else "Cancelled; credits refunded."
        await self._send_to_channel(job.channel_id, f"{headline}\n❌ {reason}", None, None)

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(log_failure("a delivery"))


async def setup(bot: LatentcordBot) -> None:
    bot.add_dynamic_items(JobButton)
    await bot.add_cog(Imagine(bot))

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
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands
from PIL import Image

from bot.app import send_ephemeral
from bot.errors import USER_FACING_ERRORS, PromptRejected
from bot.events import Cancelled, Failed, Progress, Queued, Started
from bot.rendering import EncodedImage, encode_image
from bot.requests import ASPECT_RATIOS, MAX_COUNT, MAX_GUIDANCE, MAX_SEED, MAX_STEPS, ImagineOptions, JobKind
from bot.service import Completed, JobResult, Origin, ServiceEvent, SubmittedJob
from cogs.moderation import is_moderator, post_to_modlog

if TYPE_CHECKING:
    from bot.app import LatentcordBot

log = logging.getLogger(__name__)

# Discord gives 3 s to answer; past this much of it, answer with an ephemeral "thinking" first.
DECISION_BUDGET_S = 2.0
# Interaction tokens live 15 minutes; past this age, deliver with the bot token instead.
TOKEN_SAFE_AGE_S = 14 * 60
STRONG_VARIATION, SUBTLE_VARIATION = 0.75, 0.35

ACTIONS = {
    "u": "upscale",
    "v": "variation",
    "r": "re-roll",
    "vs": "strong variation",
    "vt": "subtle variation",
    "x": "cancel",
    "del": "delete",
}


class JobButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"lc:(?P<action>[a-z]+):(?P<job>[0-9]+):(?P<n>[0-9]+)"
):
    """A button that names its job and image (``lc:u:<job>:<n>``, n from 1), so it needs no memory."""

    def __init__(
        self,
        action: str,
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
            label=label, emoji=emoji, style=style, disabled=disabled, custom_id=f"lc:{action}:{job_id}:{n}"
        )
        super().__init__(button, row=row)
        self.action, self.job_id, self.n = action, job_id, n

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: Any, /
    ) -> JobButton:
        return cls(match["action"], int(match["job"]), int(match["n"]))

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
        view.add_item(JobButton("u", job_id, n, label=f"U{n}", disabled=n - 1 in withheld, row=0))
    view.add_item(JobButton("r", job_id, 0, label="🔄", style=discord.ButtonStyle.primary, row=0))
    for n in range(1, images + 1):
        view.add_item(JobButton("v", job_id, n, label=f"V{n}", disabled=n - 1 in withheld, row=1))
    view.add_item(JobButton("del", job_id, 0, label="Delete", emoji="🗑️", style=discord.ButtonStyle.danger, row=2))
    return view


def upscale_buttons(job_id: int, withheld: bool) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton("vs", job_id, 1, label="Vary (Strong)", disabled=withheld, row=0))
    view.add_item(JobButton("vt", job_id, 1, label="Vary (Subtle)", disabled=withheld, row=0))
    view.add_item(JobButton("del", job_id, 0, label="Delete", emoji="🗑️", style=discord.ButtonStyle.danger, row=0))
    return view


def cancel_button(job_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton("x", job_id, 0, label="Cancel", style=discord.ButtonStyle.secondary))
    return view


def origin_of(interaction: discord.Interaction[Any]) -> Origin:
    user = interaction.user
    channel = interaction.channel
    age_restricted = False
    if channel is not None:
        checked = getattr(channel, "parent", None) if isinstance(channel, discord.Thread) else channel
        is_nsfw = getattr(checked, "is_nsfw", None)
        age_restricted = bool(is_nsfw()) if callable(is_nsfw) else False
    roles = tuple(role.id for role in getattr(user, "roles", ()) if not role.is_default())
    return Origin(
        user_id=user.id,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        role_ids=roles,
        channel_age_restricted=age_restricted,
    )


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


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass(slots=True, eq=False)
class Delivery:
    """Where one job's messages go, while its interaction token is young enough to edit them."""

    interaction: discord.Interaction[Any]
    headline: str
    edit: Callable[..., Awaitable[Any]] | None = None
    inbox: asyncio.Queue[ServiceEvent] = field(default_factory=asyncio.Queue)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    last_edit_at: float = float("-inf")


class Imagine(commands.Cog):
    def __init__(self, bot: LatentcordBot) -> None:
        self.bot = bot
        self.service = bot.service
        self._tasks: set[asyncio.Task[None]] = set()
        self._resumed: set[int] = set()  # resumed jobs whose status message says so already
        self._restate_lock = asyncio.Lock()

    async def cog_load(self) -> None:
        self.service.add_listener(self._on_unowned_event)

    async def cog_unload(self) -> None:
        self.service.remove_listener(self._on_unowned_event)
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
        prompt: app_commands.Range[str, 1, 1500],
        negative: app_commands.Range[str, 1, 1500] | None = None,
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
        models = [name for name in self.bot.settings.models if typed in name.casefold()]
        return [app_commands.Choice(name=name[:100], value=name[:100]) for name in models[:25]]

    # -- buttons -----------------------------------------------------------------------

    async def handle_button(self, interaction: discord.Interaction[Any], action: str, job_id: int, n: int) -> None:
        origin = origin_of(interaction)
        index = max(n - 1, 0)
        if action == "x":
            await self.service.cancel(job_id, actor_id=interaction.user.id, is_moderator=is_moderator(interaction))
            await interaction.response.send_message("Cancelled; its credits were refunded.", ephemeral=True)
            return
        if action == "del":
            await self._delete_result(interaction, job_id)
            return
        starters = {
            "u": lambda listener: self.service.upscale(job_id, index, origin, listener),
            "v": lambda listener: self.service.variation(job_id, index, origin, listener),
            "r": lambda listener: self.service.reroll(job_id, origin, listener),
            "vs": lambda listener: self.service.variation(job_id, index, origin, listener, strength=STRONG_VARIATION),
            "vt": lambda listener: self.service.variation(job_id, index, origin, listener, strength=SUBTLE_VARIATION),
        }
        if action not in starters:
            await send_ephemeral(interaction, "This button is from a newer or older version of the bot.")
            return
        await self._admit(interaction, starters[action])

    async def _delete_result(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        job = await self.bot.store.get_job(job_id)
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
        try:
            if deferred:
                await interaction.edit_original_response(content=f"Accepted: job {submitted.job_id}.")
                message = await interaction.followup.send(status, view=view, wait=True)
                delivery.edit, message_id = message.edit, message.id
            else:
                callback = await interaction.response.send_message(status, view=view)
                delivery.edit, message_id = interaction.edit_original_response, callback.message_id
            await self.bot.store.set_delivery(
                submitted.job_id,
                message_id=message_id,
                interaction_token=interaction.token,
                token_created_at=interaction.created_at.timestamp(),
            )
        except discord.HTTPException:
            log.warning("could not post the status of job %s; the result goes to the channel", submitted.job_id)
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
                    await self._post_result(result, delivery)
                    return
                case Failed(message=message):
                    await self._post_text(job_id, delivery, f"{delivery.headline}\n❌ {message}")
                    return
                case Cancelled():
                    await self._post_text(job_id, delivery, f"{delivery.headline}\nCancelled; credits refunded.")
                    return

    def _token_fresh(self, delivery: Delivery | None) -> bool:
        if delivery is None or delivery.edit is None:
            return False
        return self.bot.clock() - delivery.interaction.created_at.timestamp() < TOKEN_SAFE_AGE_S

    async def _edit_status(self, delivery: Delivery, content: str, preview: Image.Image | None = None) -> None:
        now = self.bot.clock()
        # PREVIEW_INTERVAL_S (about 1.5 s) keeps a job within Discord's edit rate limits.
        if not self._token_fresh(delivery) or now - delivery.last_edit_at < self.bot.settings.preview_interval_s:
            return
        delivery.last_edit_at = now
        attachments = [discord.File(io.BytesIO(_png(preview)), "preview.png")] if preview is not None else []
        try:
            await delivery.edit(content=content, attachments=attachments)
        except discord.HTTPException:
            log.info("could not edit a progress message", exc_info=True)

    async def _post_text(self, job_id: int, delivery: Delivery, content: str) -> None:
        if self._token_fresh(delivery):
            try:
                await delivery.edit(content=content, attachments=[], view=None)
                return
            except discord.HTTPException:
                log.info("could not edit the message of job %s; posting instead", job_id, exc_info=True)
        job = await self.bot.store.get_job(job_id)
        if job is not None:
            await self._send_to_channel(job.channel_id, content, None, None)

    async def _post_result(self, result: JobResult, delivery: Delivery | None) -> None:
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
        grid = await self._grid_for(result, delivery)
        content = "\n".join(lines)
        if self._token_fresh(delivery):
            try:
                await delivery.edit(content=content, attachments=[grid], view=view)
                return
            except discord.HTTPException:
                log.info("could not edit the message of job %s; posting instead", job.id, exc_info=True)
                grid = await self._grid_for(result, delivery)  # a File is consumed by a send
        await self._send_to_channel(job.channel_id, content, grid, view)

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

    async def _send_to_channel(
        self, channel_id: int | None, content: str, file: discord.File | None, view: discord.ui.View | None
    ) -> None:
        """Post with the bot token: for results older than the interaction token, or after a restart."""
        if channel_id is None:
            return
        try:
            channel = self.bot.get_channel(channel_id) or await self.bot.fetch_channel(channel_id)
            kwargs: dict[str, Any] = {"content": content}
            if file is not None:
                kwargs["file"] = file
            if view is not None:
                kwargs["view"] = view
            await channel.send(**kwargs)  # type: ignore[union-attr]
        except discord.HTTPException:
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
            self._track(asyncio.create_task(self._post_result(event.result, None)))
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
            job = await self.bot.store.get_job(job_id)
            if job is None or job.message_id is None or job.channel_id is None:
                return
            headline = _headline(job.prompt, job.user_id, job.kind, job.parent_image)
            try:
                channel = self.bot.get_channel(job.channel_id) or await self.bot.fetch_channel(job.channel_id)
                message = channel.get_partial_message(job.message_id)  # type: ignore[union-attr]
                await message.edit(content=f"{headline}\n{status}", view=view)
            except (discord.HTTPException, AttributeError):
                log.info("could not update the status message of resumed job %s", job_id, exc_info=True)

    async def _post_unowned_text(self, event: Failed | Cancelled) -> None:
        job = await self.bot.store.get_job(event.job_id)
        if job is None:
            return
        headline = _headline(job.prompt, job.user_id, job.kind, job.parent_image)
        reason = event.message if isinstance(event, Failed) else "Cancelled; credits refunded."
        await self._send_to_channel(job.channel_id, f"{headline}\n❌ {reason}", None, None)

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("a delivery failed", exc_info=task.exception())


async def setup(bot: LatentcordBot) -> None:
    bot.add_dynamic_items(JobButton)
    await bot.add_cog(Imagine(bot))

"""A job's messages from admission to result: progress edits, then its result posted until a message holds it.

While the interaction token is young enough, the job's own message is edited; a result
finished later, or resumed after a restart, is posted to the channel with the bot token.
When Discord refuses, the service says when to retry (the count and the clock are kept
in SQLite, across restarts); once it gives up, it has refunded the job and the member is
told so by whatever route still works.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import discord

from bot.images.encoding import DISCORD_UPLOAD_LIMIT
from bot.images.metadata import fit_upload
from bot.jobs.events import Cancelled, Failed, Progress, Queued, Started
from bot.jobs.messages import fit_content
from bot.jobs.outcomes import Completed, JobResult, ServiceEvent
from bot.jobs.recipe import JobKind
from bot.runtime.tasks import TaskSet
from cogs._shared.channels import messageable_channel
from cogs.imagine._buttons import describe_buttons, grid_buttons, holds_result, upscale_buttons
from cogs.imagine._wording import headline, progress_bar, queued, summary

if TYPE_CHECKING:
    from bot.app import LatentcordBot

log = logging.getLogger(__name__)

#: Discord keeps at most this many characters of a message nonce.
NONCE_MAX_CHARS = 25

# Interaction tokens live 15 minutes; past this age, deliver with the bot token instead.
TOKEN_SAFE_AGE_S = 14 * 60
# How far back in a channel to look, after a restart, for a result posted just before a crash.
RESULT_SEARCH_DEPTH = 50
# How long a shutdown waits for results being posted at that moment.
SHUTDOWN_POST_WAIT_S = 15.0


class ResultUndeliverable(Exception):
    """No Discord route can take a result right now (no channel, or one that takes no messages)."""


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
    result_due: bool = False  # a result came and is not posted yet: a shutdown waits for it

    def receive(self, event: ServiceEvent) -> None:
        """The service's listener for this job: its events, in order, to the job's follower."""
        if isinstance(event, Completed):
            self.result_due = True
        self.inbox.put_nowait(event)


async def grid_file(result: JobResult, limit_bytes: int) -> discord.File:
    """The result's grid as a file to post, shrunk off the event loop if it is over ``limit_bytes``."""
    grid = await asyncio.to_thread(fit_upload, result.grid, result.recipe, limit_bytes)
    return discord.File(io.BytesIO(grid.data), grid.filename)


def result_message(result: JobResult, title: str) -> tuple[str, discord.ui.View]:
    """The text and the buttons of a posted result (``/show`` posts the same)."""
    job = result.job
    lines = [title, summary(result)]
    if result.withheld:
        lines.append(
            f"{len(result.withheld)} image(s) withheld by the content filter; {result.refunded} credit(s) refunded."
        )
    if job.recipe.kind == JobKind.DESCRIBE:
        return described(result, title)
    if job.recipe.kind == JobKind.UPSCALE:
        view = upscale_buttons(job.id, withheld=0 in result.withheld)
    else:
        view = grid_buttons(job.id, len(result.image_paths), result.withheld)
    return "\n".join(lines), view


def described(result: JobResult, title: str) -> tuple[str, discord.ui.View]:
    """A /describe's result: its four prompts, numbered, each with its button; none where the picture was withheld."""
    job = result.job
    if result.withheld:
        lines = [
            title,
            "The picture was withheld by the content filter, so no prompts are shown; "
            f"{result.refunded} credit(s) refunded.",
        ]
        return "\n".join(lines), describe_buttons(job.id, 0)
    prompts = [f"**{n}.** {_shown(text)}" for n, text in enumerate(job.texts, start=1)]
    return "\n".join([title, *prompts, "Press a number to /imagine that prompt."]), describe_buttons(
        job.id, len(job.texts)
    )


def _shown(text: str) -> str:
    """A described prompt as text, never obeyed: no formatting, no pings."""
    shown = text if len(text) <= 400 else text[:399] + "…"
    return discord.utils.escape_mentions(discord.utils.escape_markdown(shown)) or "(nothing)"


class Deliveries:
    """The cog's deliveries in flight, and how each reaches Discord."""

    def __init__(self, bot: LatentcordBot) -> None:
        self.bot = bot
        self.service = bot.service
        self._tasks = TaskSet("a delivery")
        self._posting: set[asyncio.Task[Any]] = set()  # deliveries in the middle of a try, not backing off
        self._following: dict[asyncio.Task[Any], Delivery] = {}  # a job's follower and its delivery

    def spawn(self, work: Coroutine[Any, Any, None], name: str | None = None) -> None:
        """Run ``work`` as a task the cog keeps until it ends, and cancels on unload; a failure is logged."""
        self._tasks.spawn(work, name=name)

    async def close(self) -> None:
        """On shutdown, a result being posted gets a moment to land; anything left is posted on the next start."""
        # A follower whose result has come but is still behind a progress edit counts as posting too.
        due = {task for task, delivery in self._following.items() if delivery.result_due}
        posting = {task for task in self._posting | due if not task.done()}
        if posting:
            await asyncio.wait(posting, timeout=SHUTDOWN_POST_WAIT_S)
        self._tasks.cancel()

    # -- an admitted job's events -----------------------------------------------------------

    async def follow(self, job_id: int, delivery: Delivery) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._following[task] = delivery
            task.add_done_callback(self._following.pop)
        while True:
            event = await delivery.inbox.get()
            match event:
                case Queued(position=position):
                    waiting = self.service.waiting_reason()
                    await self._edit_status(delivery, f"{delivery.headline}\n{queued(position, waiting)}")
                case Started():
                    await self._edit_status(delivery, f"{delivery.headline}\nStarting…")
                case Progress(step=step, total=total, preview=preview):
                    if delivery.inbox.empty():  # a newer event is waiting: skip straight to it
                        text = f"{delivery.headline}\nGenerating {progress_bar(step, total)} {step}/{total}"
                        await self._edit_status(delivery, text, preview)
                case Completed(result=result):
                    await self.deliver(result, delivery)
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
            await self.send_to_channel(job.channel_id, content)

    # -- a result, until a message holds it -----------------------------------------------

    async def deliver(self, result: JobResult, delivery: Delivery | None) -> None:
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
        try:
            channel = await messageable_channel(self.bot, job.channel_id)
            if channel is None:
                return None
            if job.message_id is not None:
                try:
                    status = await channel.fetch_message(job.message_id)
                    if holds_result(status, me, job.id):
                        return status.id
                except discord.NotFound:
                    pass
            async for message in channel.history(limit=RESULT_SEARCH_DEPTH):
                if holds_result(message, me, job.id):
                    return message.id
        except discord.HTTPException:
            log.info("could not look for an earlier post of job %s; posting it", job.id, exc_info=True)
        return None

    async def _post_result(self, result: JobResult, delivery: Delivery | None) -> int | None:
        """Post the grid with its buttons; the id of the message that holds it. Raises when no route works."""
        job = result.job
        content, view = result_message(result, delivery.headline if delivery else headline(job.recipe, job.user_id))
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
        # One nonce per job: if a crash comes between posting and recording it, Discord answers the
        # second post with the first message rather than showing the result twice.
        nonce = f"latentcord-{job.id}"[:NONCE_MAX_CHARS]
        message = await self._channel_send(job.channel_id, content=content, file=grid, view=view, nonce=nonce)
        return message.id

    async def _tell_undelivered(self, result: JobResult, delivery: Delivery | None, refunded: int) -> None:
        """One message, by the first route that works, that the images were made but never posted."""
        job = result.job
        title = delivery.headline if delivery else headline(job.recipe, job.user_id)
        minutes = max(1, round(self.bot.settings.delivery_give_up_s / 60))
        notice = (
            f"{title}\n❌ Your images were made, but Discord would not let me post them for {minutes} min; "
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

    async def _grid_for(self, result: JobResult, delivery: Delivery | None) -> discord.File:
        return await grid_file(result, delivery.interaction.filesize_limit if delivery else DISCORD_UPLOAD_LIMIT)

    # -- with the bot token -------------------------------------------------------------------

    async def _channel_send(self, channel_id: int, **kwargs: Any) -> discord.Message:
        """Post with the bot token: for results older than the interaction token, or after a restart."""
        channel = await messageable_channel(self.bot, channel_id)
        if channel is None:
            raise ResultUndeliverable(f"channel {channel_id} takes no messages")
        if kwargs.get("content") is not None:
            kwargs["content"] = fit_content(kwargs["content"])
        return await channel.send(**{key: value for key, value in kwargs.items() if value is not None})

    async def send_to_channel(self, channel_id: int | None, content: str) -> None:
        """Best effort, for notices: a failure is logged, not retried."""
        if channel_id is None:
            return
        try:
            await self._channel_send(channel_id, content=content)
        except (discord.HTTPException, ResultUndeliverable):
            log.warning("could not post to channel %s", channel_id, exc_info=True)

"""Jobs with no interaction to answer through: resumed from SQLite after a restart, or finished unposted.

Their results go to their channel with the bot token, and their old status message is
corrected, so it does not say "Queued" forever.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import discord

from bot.jobs.events import Cancelled, Failed, Queued
from bot.jobs.messages import fit_content
from bot.jobs.outcomes import Completed, ServiceEvent
from cogs._shared.channels import messageable_channel
from cogs.imagine._buttons import cancel_button
from cogs.imagine._delivery import Deliveries
from cogs.imagine._wording import headline

if TYPE_CHECKING:
    from bot.app import LatentcordBot

log = logging.getLogger(__name__)


class ResumedJobs:
    """Listens to the jobs no interaction follows, and posts what was left unposted before a restart."""

    def __init__(self, bot: LatentcordBot, deliveries: Deliveries) -> None:
        self.bot = bot
        self.service = bot.service
        self._deliveries = deliveries
        self._resumed: set[int] = set()  # resumed jobs whose status message says so already
        self._restate_lock = asyncio.Lock()

    async def redeliver_after_restart(self) -> None:
        """Results finished before a restart but never posted are posted now (or refunded)."""
        await self.bot.wait_until_ready()
        for result in await self.service.undelivered_results():
            self._deliveries.spawn(self._deliveries.deliver(result, None), name=f"redeliver-{result.job.id}")

    def on_event(self, event: ServiceEvent) -> None:
        """The service's listener for jobs resumed after a restart, which have no interaction."""
        spawn = self._deliveries.spawn
        if isinstance(event, Queued) and event.job_id not in self._resumed:
            self._resumed.add(event.job_id)
            status = f"Resumed after a restart: queued, position {event.position}."
            spawn(self._restate(event.job_id, status, cancel_button(event.job_id)))
        elif isinstance(event, Completed):
            self._resumed.discard(event.job_id)
            spawn(self._deliveries.deliver(event.result, None))
            status = "Finished after a restart: the result is below."
            spawn(self._restate(event.job_id, status, None))
        elif isinstance(event, Failed | Cancelled):
            self._resumed.discard(event.job_id)
            spawn(self._post_text(event))
            spawn(self._restate(event.job_id, "Stopped after a restart.", None))

    async def _restate(self, job_id: int, status: str, view: discord.ui.View | None) -> None:
        """Edit a resumed job's status message with the bot token; a missing message is no loss.

        The lock is taken before the first await: tasks start in the order they were
        created and asyncio locks are fair, so the edits land in the order of the events.
        """
        async with self._restate_lock:
            job = await self.service.job(job_id)
            if job is None or job.message_id is None or job.channel_id is None:
                return
            title = headline(job.recipe, job.user_id)
            try:
                channel = await messageable_channel(self.bot, job.channel_id)
                if channel is None:
                    return
                message = await channel.fetch_message(job.message_id)
                await message.edit(content=fit_content(f"{title}\n{status}"), view=view)
            except discord.HTTPException:
                log.info("could not update the status message of resumed job %s", job_id, exc_info=True)

    async def _post_text(self, event: Failed | Cancelled) -> None:
        job = await self.service.job(event.job_id)
        if job is None:
            return
        title = headline(job.recipe, job.user_id)
        reason = event.message if isinstance(event, Failed) else "Cancelled; credits refunded."
        await self._deliveries.send_to_channel(job.channel_id, f"{title}\n❌ {reason}")

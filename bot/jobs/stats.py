"""What /queue, /stats, /help and the bot's presence tell: the queue, a guild's numbers, an estimated wait.

The wait is estimated from measured batch times: the GPU seconds (``generation_s`` in a
finished job's timings) of the last ``BATCH_WINDOW`` finished jobs of each model, read from
SQLite when first needed and kept current by the job-event observer (``observe``), so the
estimate follows the hardware and the models a server really uses without a query per ask.
A job ``n`` places back waits about ``n`` batches of its model, shared among the workers.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from statistics import fmean
from typing import TYPE_CHECKING

from bot.jobs.outcomes import Completed, ObservedEvent
from bot.policy.nsfw import NsfwMode
from db.stats import GuildStats, QueueCounts, Ranked, StarredResult

if TYPE_CHECKING:
    from bot.jobs.admission import Origin
    from bot.jobs.service import GenerationService

#: Finished jobs per model whose batch times the estimate averages.
BATCH_WINDOW = 20
#: Favourites of each kind /stats lists.
STATS_TOP = 5
DAY_S = 86_400.0
WEEK_S = 7 * DAY_S

__all__ = [
    "GuildStats",
    "JobStats",
    "MemberJob",
    "QueueCounts",
    "QueueReport",
    "Ranked",
    "ServerFacts",
    "StarredResult",
]


@dataclass(frozen=True, slots=True)
class MemberJob:
    """One of a member's unfinished jobs: where it is, and about how long until it starts."""

    job_id: int
    position: int  # 0: running now; 1: next
    model: str
    wait_s: float | None  # None: nothing measured yet; 0 while running


@dataclass(frozen=True, slots=True)
class QueueReport:
    counts: QueueCounts
    mine: tuple[MemberJob, ...]
    new_job_wait_s: float | None  # about how long a job asked for now would wait; None: nothing measured yet
    workers: int


@dataclass(frozen=True, slots=True)
class ServerFacts:
    """What /help says the bot does here."""

    models: tuple[str, ...]
    styles: tuple[str, ...]
    loras: tuple[str, ...]
    nsfw_allowed_here: bool
    nsfw_mode: NsfwMode | None  # None in direct messages


class JobStats:
    """Reads the queue and a guild's numbers for the status commands; observes jobs for batch times."""

    def __init__(self, service: GenerationService, *, clock: Callable[[], float] = time.time) -> None:
        self._service = service
        self._store = service.store
        self._worker = service.worker
        self._clock = clock
        self._batch_times: dict[str, deque[float]] = {}
        self._loaded = False

    # -- batch times ---------------------------------------------------------------------

    def observe(self, event: ObservedEvent) -> None:
        """A job observer (``GenerationService.add_observer``): each finished job's batch time."""
        if isinstance(event, Completed):
            seconds = event.result.job.timings.get("generation_s")
            if seconds is not None:
                self._remember(event.result.recipe.model, float(seconds))

    def _remember(self, model: str, seconds: float) -> None:
        self._batch_times.setdefault(model, deque(maxlen=BATCH_WINDOW)).append(seconds)

    async def _load_batch_times(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        measured, self._batch_times = self._batch_times, {}
        for batch in await self._store.recent_batch_times(BATCH_WINDOW * 4):
            self._remember(batch.model, batch.generation_s)
        for model, seconds in measured.items():  # what the observer saw meanwhile is newer
            for value in seconds:
                self._remember(model, value)

    def batch_seconds(self, model: str | None = None) -> float | None:
        """The mean measured batch time of ``model`` (any model's when it has none, or for ``None``)."""
        times = self._batch_times.get(model) if model is not None else None
        if not times:
            times = deque(value for seconds in self._batch_times.values() for value in seconds)
        return fmean(times) if times else None

    # -- the queue -----------------------------------------------------------------------

    def queue_length(self) -> int:
        """Jobs waiting to start, on every server: what the presence shows. No SQL: read every few seconds."""
        return self._worker.queued_count

    async def queue(self, guild_id: int | None, user_id: int) -> QueueReport:
        await self._load_batch_times()
        counts = await self._store.queue_counts(guild_id)
        workers = max(1, self._worker.health().workers)
        mine = []
        for order in self._worker.pending_jobs(user_id):
            position = self._worker.position(order.job_id) or 0
            batch = self.batch_seconds(order.recipe.model)
            wait = None if batch is None else position * batch / workers
            mine.append(MemberJob(order.job_id, position, order.recipe.model, wait))
        mean = self.batch_seconds()
        new_job_wait = (
            None if mean is None else (counts.all_waiting + (1 if counts.all_running else 0)) * mean / workers
        )
        return QueueReport(counts, tuple(mine), new_job_wait, self._worker.health().workers)

    # -- a guild's numbers -----------------------------------------------------------------

    async def guild_stats(self, guild_id: int) -> GuildStats:
        """Since midnight UTC, since Monday's midnight UTC, and ever; the favourites of each kind."""
        now = self._clock()
        day_start = now - now % DAY_S
        # 1970-01-01 was a Thursday: days since the epoch + 3, modulo 7, is the days since Monday.
        week_start = day_start - ((int(now // DAY_S) + 3) % 7) * DAY_S
        return await self._store.guild_stats(guild_id, day_start=day_start, week_start=week_start, top=STATS_TOP)

    async def star(self, message_id: int, change: int) -> int | None:
        """A ⭐ added (1) or taken away (-1) on the result ``message_id`` holds; its count, or None if no result."""
        return await self._store.change_stars(message_id, change)

    # -- what /help says -------------------------------------------------------------------

    async def server_facts(self, origin: Origin) -> ServerFacts:
        models = await self._service.enabled_models(origin.guild_id)
        styles = await self._service.styles(origin.guild_id)
        loras = await self._service.fine_tunes(origin.guild_id, "lora")
        decision = await self._service.nsfw_decision(origin)
        mode = (
            None if origin.guild_id is None else NsfwMode((await self._store.guild_settings(origin.guild_id)).nsfw_mode)
        )
        return ServerFacts(
            models=tuple(models),
            styles=tuple(style.name for style in styles),
            loras=tuple(lora.name for lora in loras),
            nsfw_allowed_here=decision.allow_nsfw_prompts,
            nsfw_mode=mode,
        )

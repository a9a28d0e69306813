"""The service: admits jobs, hands them to the worker, records and delivers outcomes.

The facade front ends call. A request is checked in this order, and nothing is charged
or queued unless it passes every check: options (done by the caller with
``bot.jobs.requests``), the prompt filter and NSFW policy of the channel, the text
encoder's token limit, room in the queue, then the quota check-and-charge (one SQLite
transaction that also records the job). Outcomes are written back to SQLite and
whatever was not delivered is refunded: a failed or cancelled job entirely, a withheld
image its share.

Front ends pass a listener with each request, or listen to every job that has none
(jobs resumed after a restart) with ``add_listener``. Listeners get ``Queued``,
``Started``, ``Progress``, ``Completed``, ``Failed`` and ``Cancelled``, in order,
after SQLite has recorded the change. Observers (``add_observer``: metrics, a live
gallery) get every job's events besides, and ``Delivered`` once a message holds a
result, without touching the job's path: an observer that raises is logged and skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from bot.errors import InvalidRequest, JobNotFound, NotAllowed, PromptRejected, QueueFull, QuotaExceeded, StorageBusy
from bot.images.archive import read_source_image
from bot.images.edits import describe, edit_size
from bot.images.uploads import KeptPictures, fit_to, read_upload
from bot.jobs import permutations
from bot.jobs.admission import Admission, Origin, cost_of
from bot.jobs.events import Cancelled, Failed, Finished, JobEvent, Progress, Queued, Started
from bot.jobs.finetunes import FineTuneLibrary
from bot.jobs.flags import parse_prompt_flags
from bot.jobs.generation import work_order
from bot.jobs.outcomes import (
    Completed,
    Delivered,
    DeliveryVerdict,
    Job,
    JobObserver,
    JobResult,
    ObservedEvent,
    ResultWriter,
    ServiceEvent,
    ServiceListener,
    SubmittedJob,
    WaitingJob,
)
from bot.jobs.prompts import check_prompt_weights
from bot.jobs.recipe import MAX_SEED, UPSCALE_FACTOR, JobKind, Recipe, embedding_uses, lora_entry, lora_uses
from bot.jobs.requests import (
    MAX_COUNT,
    MAX_REPEAT,
    MAX_SIDE,
    MIN_REPEAT,
    ImagineOptions,
    Picture,
    check_prompt_text,
    check_range,
    picture_size,
    resolve_imagine,
    styled,
)
from bot.policy.nsfw import NsfwDecision
from bot.policy.pricing import refund_for_withheld
from bot.runtime.backoff import Backoff
from bot.runtime.tasks import TaskSet
from bot.runtime.threads import background_executor
from bot.workers.protocol import WorkerClient
from db.errors import QuotaExhausted, StorageUnavailable
from db.records import AuditEntry, Delivery, FineTune, MemberPreferences, NewJob, QuotaRule, Style
from models.finetunes import FineTuneKind

if TYPE_CHECKING:
    from bot.settings import Settings
    from db.store import Store

log = logging.getLogger(__name__)

DELIVERY_MAX_BACKOFF_S = 60.0
#: Told with a job accepted while no GPU worker is online (workers on other hosts not started yet, say).
NO_WORKER_YET = "No GPU worker is online yet; your job starts when one is."
#: Told when the database refuses to record a new job (its disk failing, or full).
STORAGE_BUSY = "The bot cannot record new jobs at the moment; nothing was charged. Try again in a few minutes."
#: Told when a job's images were made but could not be written to ``IMAGES_DIR`` (a full disk, say).
RESULT_NOT_SAVED = "Its images were made but could not be saved on the bot's disk, so its credits are refunded."

P = ParamSpec("P")
T = TypeVar("T")

__all__ = ["GenerationService", "Origin"]


@dataclass(slots=True, eq=False)
class _Following:
    """What the service keeps of a job between admission and its last event."""

    job: Job
    decision: NsfwDecision
    listener: ServiceListener | None
    task: asyncio.Task[None] | None = None


class GenerationService:
    def __init__(
        self,
        *,
        settings: Settings,
        store: Store[Recipe],
        worker: WorkerClient,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.worker = worker
        self._clock = clock
        self._admission = Admission(store=store, worker=worker, clock=clock)
        self.finetunes = FineTuneLibrary(settings, store)
        self._results = ResultWriter(settings.images_dir)
        # Writing the files a worker made: below the event loop's priority, never in its way. Grids go
        # first, on their own thread; each image's own file is cut from its grid afterwards, on another.
        self._disk = background_executor(1, "latentcord-disk")
        self._image_files = background_executor(1, "latentcord-images")
        self._pictures = KeptPictures(settings.images_dir, self._disk)  # members' pictures, on the disk thread
        self._writing_images: dict[int, asyncio.Future[None]] = {}
        self._listeners: list[ServiceListener] = []
        self._observers: list[JobObserver] = []
        self._following: dict[int, _Following] = {}
        self._tasks = TaskSet("a job follower")
        self._closed = False

    # -- listeners -------------------------------------------------------------------

    def add_listener(self, listener: ServiceListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: ServiceListener) -> None:
        self._listeners.remove(listener)

    def add_observer(self, observer: JobObserver) -> None:
        """``observer`` sees every job's events, whoever listens to them, and each result's delivery."""
        self._observers.append(observer)

    def remove_observer(self, observer: JobObserver) -> None:
        self._observers.remove(observer)

    # -- admission ---------------------------------------------------------------------

    async def imagine(
        self,
        options: ImagineOptions,
        origin: Origin,
        listener: ServiceListener | None = None,
        *,
        picture: bytes | None = None,
    ) -> SubmittedJob:
        """Check, charge and queue a new ``/imagine``, from ``picture`` (the encoded bytes a member gave) if given.

        Raises a ``DomainError`` or ``ModelError``.
        """
        recipe, notices = await self._recipe_for(options, origin, picture)
        if picture is None or recipe.source is None:
            return await self.submit(recipe, origin, listener, notices=notices)
        # The picture kept for it is held until its job is recorded, and let go of if it never is.
        try:
            submitted = await self.submit(recipe, origin, listener, notices=notices)
        except Exception:
            self._pictures.release(recipe.source)
            await self._let_go_of_picture(recipe.source)
            raise
        except BaseException:
            self._pictures.release(recipe.source)
            raise
        self._pictures.release(recipe.source)
        return submitted

    async def _recipe_for(
        self, options: ImagineOptions, origin: Origin, picture: bytes | None
    ) -> tuple[Recipe, list[str]]:
        """The recipe an ``/imagine`` makes, and the notices to give with it; nothing is charged or queued."""
        # 1. Options and the flags typed in the prompt through the one parser, the member's own defaults for
        #    what neither gave (one the server no longer allows is left out, with a notice), every value
        #    checked, before a model is loaded for them.
        options, notices = await self._with_member_defaults(parse_prompt_flags(options), origin)
        checked = options.checked(models=self.settings.models, max_prompt_chars=self.settings.prompt_max_chars)
        if origin.guild_id is not None and checked.model in await self.store.disabled_models(origin.guild_id):
            raise InvalidRequest(
                f"The model {checked.model} is not enabled on this server; /model list shows which are."
            )
        if checked.style is not None:
            style = await self._style(origin.guild_id, checked.style)
            prompt, negative = styled(checked.prompt, checked.negative, style.prompt, style.negative)
            checked = replace(
                checked,
                prompt=check_prompt_text(prompt, max_chars=self.settings.prompt_max_chars),
                negative=negative,
                style=style.name,
            )
        # 2. The guild's LoRAs (tags taken out of the prompt) and embeddings (named in the prompts).
        fine = await self.finetunes.resolve(origin.guild_id, checked.prompt, checked.negative, options.lora)
        if fine.prompt != checked.prompt:
            checked = replace(checked, prompt=check_prompt_text(fine.prompt, max_chars=self.settings.prompt_max_chars))
        # 3. The chosen model's defaults.
        preset = await self.worker.preset(checked.model)
        # 4. A channel the moderators put in draft mode (/draft) gets fast previews.
        draft = (
            origin.guild_id is not None
            and origin.channel_id in (await self.store.guild_settings(origin.guild_id)).draft_channels
        )
        # 5. The picture, decoded off the event loop (a refused one is never decoded in full), and kept
        #    fitted to the model's size at the aspect preset nearest to its shape; last, as it is held from
        #    here until ``imagine`` releases it.
        kept: Picture | None = None
        if picture is not None:
            image = await asyncio.to_thread(read_upload, picture)
            width, height = picture_size(preset, image.width, image.height)
            fitted = await asyncio.to_thread(fit_to, image, width, height)
            kept = Picture(str(await self._pictures.keep(fitted)), width, height)
        recipe = replace(
            resolve_imagine(checked, preset, kept, draft=draft),
            loras=tuple(lora_entry(use) for use in fine.loras),
            embeddings=tuple(f"{item.name}:{item.sha256}" for item in fine.embeddings),
            style=checked.style,
        )
        if draft:
            notices.append(f"Draft channel: a fast preview, DPM++ 2M at {recipe.steps} steps.")
        return recipe, notices

    async def expand(self, options: ImagineOptions, origin: Origin) -> list[ImagineOptions]:
        """The jobs one ``/imagine`` makes: each ``{a, b}`` permutation of its prompt, ``--repeat`` times each.

        Refused in a sentence above the server's limit (``/quota permutations``, 4 by default). A repeat
        of a job with a seed starts where the last one's seeds end, so each repeat is new and reproducible.
        """
        parsed = parse_prompt_flags(options)
        repeat = parsed.repeat or 1
        if parsed.repeat is not None:
            check_range("Repeat", parsed.repeat, MIN_REPEAT, MAX_REPEAT)
        if parsed.seed is not None:  # before repeats count on from it
            check_range("Seed", parsed.seed, 0, MAX_SEED)
        settings = await self.store.guild_settings(origin.guild_id) if origin.guild_id is not None else None
        limit = (settings.permutations if settings is not None else None) or permutations.DEFAULT_LIMIT
        if origin.console:  # the owner at the terminal: no server's limit
            limit = permutations.MAX_LIMIT
        total = permutations.count(parsed.prompt) * repeat
        if total > limit:
            where = "the command line allows" if origin.console else "this server allows"
            raise InvalidRequest(f"That prompt makes {total} jobs; {where} at most {limit} at once.")
        count = parsed.count or MAX_COUNT
        jobs = []
        for prompt in permutations.expand(parsed.prompt, limit):
            for turn in range(repeat):
                seed = None if parsed.seed is None else (parsed.seed + turn * count) % (MAX_SEED + 1)
                jobs.append(replace(parsed, prompt=prompt, repeat=None, seed=seed))
        return jobs

    async def quote(self, options: ImagineOptions, origin: Origin) -> int:
        """What ``imagine(options)`` would charge, checked as it would be (prompt, filter, model), charging nothing."""
        recipe, _ = await self._recipe_for(options, origin, None)
        decision = await self._admission.nsfw_decision(origin)
        await self._admission.check_prompt(recipe.prompt, origin, decision)
        return cost_of(recipe, await self.worker.preset(recipe.model))

    async def reroll(
        self, job_id: int, origin: Origin, listener: ServiceListener | None = None, *, prompt: str | None = None
    ) -> SubmittedJob:
        """The same request with new seeds (and ``prompt``, remixed); re-rolled variations vary the same image."""
        parent = await self._job(job_id)
        recipe = parent.recipe
        if recipe.kind == JobKind.VARIATION and recipe.parent_job_id is not None and recipe.parent_image is not None:
            return await self.variation(
                recipe.parent_job_id, recipe.parent_image, origin, listener, strength=recipe.strength, prompt=prompt
            )
        return await self.submit(self._remixed(recipe.as_reroll(parent.id), prompt), origin, listener)

    async def variation(
        self,
        job_id: int,
        index: int,
        origin: Origin,
        listener: ServiceListener | None = None,
        *,
        strength: float | None = None,
        prompt: str | None = None,
    ) -> SubmittedJob:
        """Four new images from image ``index`` of a job (0-based); from an upscale, at the original size."""
        parent = await self._finished_image(job_id, index)
        strength = strength if strength is not None else self.settings.variation_strength
        recipe = parent.recipe.as_variation(parent.id, index, strength=strength)
        return await self.submit(self._remixed(recipe, prompt), origin, listener)

    async def edit(
        self,
        job_id: int,
        index: int,
        mask: str,
        origin: Origin,
        listener: ServiceListener | None = None,
        *,
        prompt: str | None = None,
    ) -> SubmittedJob:
        """Vary (Region), Zoom Out or Pan (``mask``, from ``bot.images.edits``) on image ``index`` of a job."""
        parent = await self._finished_image(job_id, index)
        recipe = parent.recipe
        width, height = edit_size(mask, recipe.width, recipe.height)
        if max(width, height) > MAX_SIDE:
            raise InvalidRequest(
                f"This image is {recipe.width}x{recipe.height}; {describe(mask)} would make it {width}x{height}, "
                f"past the {MAX_SIDE} px limit."
            )
        kind = JobKind(mask.partition(":")[0])
        edited = recipe.as_edit(parent.id, index, kind, mask, (width, height))
        return await self.submit(self._remixed(edited, prompt), origin, listener)

    async def upscale(
        self, job_id: int, index: int, origin: Origin, listener: ServiceListener | None = None
    ) -> SubmittedJob:
        parent = await self._finished_image(job_id, index)
        recipe = parent.recipe
        if max(recipe.width, recipe.height) * UPSCALE_FACTOR > MAX_SIDE:
            raise InvalidRequest(
                f"This image is already {recipe.width}x{recipe.height}; upscales stop at {MAX_SIDE} px."
            )
        strength = self.settings.upscale_strength
        return await self.submit(recipe.as_upscale(parent.id, index, strength=strength), origin, listener)

    async def submit(
        self,
        recipe: Recipe,
        origin: Origin,
        listener: ServiceListener | None = None,
        *,
        notices: Sequence[str] = (),
    ) -> SubmittedJob:
        """Admit a complete recipe. ``listener`` gets this job's events; without one, the global listeners do.

        ``notices`` are sentences the member is told with the accepted job (a default left out); the
        job's ``waiting`` says when no worker is online to start it.
        """
        # 1. The prompt against the guild's filter and this channel's NSFW policy; the names of its
        #    LoRAs and embeddings too, and an NSFW-marked one as an NSFW prompt.
        decision = await self._admission.nsfw_decision(origin)
        await self._admission.check_prompt(recipe.prompt, origin, decision)
        names = [use.name for use in lora_uses(recipe)] + [name for name, _ in embedding_uses(recipe)]
        if names:
            await self._admission.check_prompt(" ".join(names), origin, decision)
        flagged = await self.finetunes.nsfw_names(origin.guild_id, recipe)
        if flagged and not decision.allow_nsfw_prompts:
            raise PromptRejected(
                f"{', '.join(flagged)} is marked NSFW by this server's moderators: use it in an age-restricted channel.",
                rule=f"NSFW fine-tune {', '.join(flagged)}",
            )
        # 2. The text encoder's limit: a longer prompt runs, but never cut without saying so.
        preset = await self.worker.preset(recipe.model)
        check_prompt_weights(recipe.negative_prompt)
        recipe = replace(recipe, chunks=await self._admission.prompt_chunks(recipe, preset))
        # 3. Room in the queue, before anything is charged.
        self.worker.check_room(origin.user_id)
        source = await self._source_of(recipe)
        # 4. Check and charge the quota and record the job, in one transaction.
        cost = cost_of(recipe, preset)
        limit = None if origin.console else QuotaRule(origin.role_ids, self.settings.daily_credits)
        new = NewJob(
            recipe=recipe,
            guild_id=origin.guild_id,
            channel_id=origin.channel_id,
            user_id=origin.user_id,
            cost=cost,
            nsfw_allowed=not decision.classify_images,
        )
        try:
            job = await self.store.admit_job(new, limit=limit)
        except QuotaExhausted as exhausted:
            raise QuotaExceeded(self._admission.quota_sentence(exhausted)) from None
        except StorageUnavailable as refused:
            log.warning("could not admit a job: %s", refused)
            raise StorageBusy(STORAGE_BUSY) from None
        # 5. Queue it. A queue that filled up in between refunds at once.
        try:
            position = await self._enqueue(_Following(job, decision, listener), source)
        except QueueFull:
            await self.store.mark_failed(job.id, "the queue was full")
            await self.store.refund(job.id, cost, "queue full")
            raise
        except Exception:  # it could not be made into a request: a bug, which charges nothing
            await self.store.mark_failed(job.id, "it could not be prepared for the workers")
            await self.store.refund(job.id, cost, "not prepared")
            raise
        return SubmittedJob(
            job_id=job.id,
            position=position,
            recipe=recipe,
            cost=cost,
            notice=" ".join(notices) or None,
            waiting=self.waiting_reason(),
        )

    # -- jobs after admission ------------------------------------------------------------

    async def cancel(self, job_id: int, *, actor_id: int, is_moderator: bool = False) -> None:
        job = await self._job(job_id)
        if job.user_id != actor_id and not is_moderator:
            raise NotAllowed("Only the person who asked for this job or a moderator can cancel it.")
        if not self.worker.cancel(job_id):
            raise InvalidRequest("This job has already finished.")

    async def resume(self) -> list[int]:
        """Requeue jobs a crash or a restart left unfinished, in their original order, uncharged; then delete
        the members' pictures no job may start from any more that the last run left (``KeptPictures.sweep``)."""
        resumed: list[int] = []
        for job in await self.store.requeue_unfinished():
            try:
                source = await self._source_of(job.recipe)
            except (InvalidRequest, JobNotFound) as missing:
                log.warning("job %s cannot resume: %s", job.id, missing)
                await self.store.mark_failed(job.id, str(missing))
                await self.store.refund(job.id, job.cost, "source image gone")
                continue
            decision = NsfwDecision(allow_nsfw_prompts=job.nsfw_allowed, classify_images=not job.nsfw_allowed)
            try:
                await self._enqueue(_Following(job, decision, None), source, resumed=True)
            except QueueFull:
                log.warning("job %s stays queued: no room after the restart", job.id)
                continue
            except Exception:
                log.exception("job %s cannot resume: it could not be prepared for the workers", job.id)
                await self.store.mark_failed(job.id, "it could not be prepared for the workers")
                await self.store.refund(job.id, job.cost, "not prepared")
                continue
            resumed.append(job.id)
        try:  # tidying, which must not stop a start: the next one tries again
            swept = await self._pictures.sweep(await self.store.sources_in_use())
        except Exception:
            log.warning("could not sweep the members' pictures no job uses", exc_info=True)
        else:
            if swept:
                log.info("deleted %d members' pictures no job uses", len(swept))
        return resumed

    def waiting_reason(self) -> str | None:
        """Why queued jobs do not start, in a sentence (no GPU worker is online: they wait for one); else None."""
        return None if self.worker.health().workers > 0 else NO_WORKER_YET

    def waiting_jobs(self, user_id: int) -> list[WaitingJob]:
        """A member's jobs still to finish, in the order they will run (position 0: running now)."""
        return [
            WaitingJob(order.job_id, self.worker.position(order.job_id) or 0, order.recipe.prompt)
            for order in self.worker.pending_jobs(user_id)
        ]

    async def shown(self, job_id: int, *, actor_id: int, guild_id: int | None, is_moderator: bool) -> JobResult:
        """A finished job's result to post again (``/show``): its requester's, or any of a moderator's server."""
        job = await self.store.get_job(job_id)
        if job is None:
            raise JobNotFound(f"Job {job_id} does not exist.")
        moderates_it = is_moderator and guild_id is not None and job.guild_id == guild_id
        if job.user_id != actor_id and not moderates_it:
            raise NotAllowed(f"Job {job_id} is not yours: only its requester or a moderator of its server can show it.")
        if job.status != "done":
            raise InvalidRequest(f"Job {job_id} has not finished, so it has no images to show.")
        try:
            return await asyncio.to_thread(self._results.stored, job)
        except OSError:
            raise JobNotFound(f"The images of job {job_id} are no longer available.") from None

    async def job(self, job_id: int) -> Job | None:
        """A job as recorded, or ``None`` if there is no such job."""
        return await self.store.get_job(job_id)

    async def result_deleted(self, job_id: int, message_id: int, *, actor_id: int, is_moderator: bool = False) -> None:
        """Its requester or a moderator deleted the message ``message_id`` holding a job's result (Delete, ❌).

        The member's picture it started from is deleted with it once no other job may start from it.
        """
        job = await self._job(job_id)
        if job.user_id != actor_id and not is_moderator:
            raise NotAllowed("Only the person who asked for this image or a moderator can delete it.")
        if await self.store.mark_result_deleted(job_id, message_id=message_id):
            await self._let_go_of_picture(job.recipe.source)

    # -- fine-tunes and models of a guild -----------------------------------------------------

    async def enabled_models(self, guild_id: int | None) -> list[str]:
        """The configured models a guild may use (``/model enable|disable``), the default first."""
        disabled = await self.store.disabled_models(guild_id) if guild_id is not None else set()
        return [model for model in self.settings.models if model not in disabled]

    async def add_fine_tune(
        self,
        guild_id: int,
        kind: str,
        name: str,
        *,
        filename: str,
        size: int,
        read: Callable[[], Awaitable[bytes]],
        actor_id: int,
        weight: float = 1.0,
        nsfw: bool = False,
    ) -> tuple[FineTune, AuditEntry]:
        """A moderator's upload (``kind``: "lora" or "embedding"), checked against the families of the
        guild's enabled models before it is kept."""
        families = sorted({(await self.worker.preset(model)).family for model in await self.enabled_models(guild_id)})
        return await self.finetunes.add(
            guild_id,
            FineTuneKind(kind),
            name,
            filename=filename,
            size=size,
            read=read,
            families=families,
            actor_id=actor_id,
            weight=weight,
            nsfw=nsfw,
        )

    async def remove_fine_tune(self, guild_id: int, kind: str, name: str, *, actor_id: int) -> AuditEntry:
        return await self.finetunes.remove(guild_id, FineTuneKind(kind), name, actor_id=actor_id)

    async def fine_tunes(self, guild_id: int | None, kind: str | None = None) -> list[FineTune]:
        if guild_id is None:
            return []
        return await self.finetunes.listed(guild_id, None if kind is None else FineTuneKind(kind))

    async def preferences(self, user_id: int) -> MemberPreferences:
        return await self.store.member_preferences(user_id)

    async def set_default(self, user_id: int, name: str, value: str | int | float | None) -> MemberPreferences:
        """Set one of a member's ``/settings`` defaults (``None``: the server's), checked like the option it fills."""
        if value is not None:
            options = {name: value} if name != "negative" else {"negative": str(value)}
            ImagineOptions(prompt="x", **options).checked(
                models=self.settings.models, max_prompt_chars=self.settings.prompt_max_chars
            )
        return await self.store.set_member_default(user_id, name, value)

    async def reset_preferences(self, user_id: int) -> MemberPreferences:
        return await self.store.reset_member_preferences(user_id)

    async def remix_enabled(self, user_id: int) -> bool:
        """Whether a member's buttons first open the Remix window (``/prefer remix``)."""
        return (await self.store.member_preferences(user_id)).remix

    async def toggle_remix(self, user_id: int) -> bool:
        """Flip a member's Remix switch; whether it is on now."""
        return (await self.store.toggle_remix(user_id)).remix

    async def record_status_message(
        self, job_id: int, *, message_id: int | None, interaction_token: str, token_created_at: float
    ) -> None:
        """Where a job's status message is, and the interaction token that may edit it for 15 minutes."""
        await self._stored(
            self.store.set_delivery,
            job_id,
            message_id=message_id,
            interaction_token=interaction_token,
            token_created_at=token_created_at,
        )

    # -- delivery of results ------------------------------------------------------------

    async def delivered(self, job_id: int, message_id: int | None) -> None:
        """A message now holds the job's result: stop retrying it, here and after a restart."""
        await self._stored(self.store.mark_delivered, job_id, message_id)
        self._observe(Delivered(job_id, message_id))

    async def delivery_failed(self, job_id: int) -> DeliveryVerdict:
        """One try to post a result failed: when to try again, or that it was given up and refunded.

        Tries back off from ``DELIVERY_FIRST_RETRY_S`` (doubling, at most a minute apart) for
        ``DELIVERY_GIVE_UP_S`` after the result was ready, counted across restarts. Past that the
        job's remaining credits are refunded in the same transaction that gives it up.
        """
        job = await self._stored(self.store.record_delivery_failure, job_id)
        if job.delivery != Delivery.PENDING:
            return DeliveryVerdict(retry_in_s=None, refunded=0)
        started = job.delivery_started_at if job.delivery_started_at is not None else self._clock()
        first = self.settings.delivery_first_retry_s
        delay = min(DELIVERY_MAX_BACKOFF_S, first * 2 ** max(job.delivery_attempts - 1, 0))
        if self._clock() + delay <= started + self.settings.delivery_give_up_s:
            return DeliveryVerdict(retry_in_s=delay, refunded=0)
        refunded = await self._stored(self.store.abandon_delivery, job_id, "result could not be posted to Discord")
        log.warning(
            "gave up posting the result of job %s after %d tries; refunded %d", job_id, job.delivery_attempts, refunded
        )
        return DeliveryVerdict(retry_in_s=None, refunded=refunded)

    async def undelivered_results(self) -> list[JobResult]:
        """Results a restart left unposted, rebuilt from SQLite and the files on disk, oldest first.

        A result whose files are gone cannot be posted any more: it is given up and refunded.
        """
        results: list[JobResult] = []
        for job in await self.store.pending_deliveries():
            try:
                results.append(await asyncio.to_thread(self._results.stored, job))
            except OSError as missing:
                log.warning("the result of job %s is gone from disk (%s); refunding it", job.id, missing)
                await self.store.abandon_delivery(job.id, "result files missing")
        return results

    async def close(self) -> None:
        """Stop taking jobs, let the running batch finish, and leave the rest queued in SQLite."""
        if self._closed:
            return
        self._closed = True
        left = await self.worker.stop()
        if left:
            log.info("%d queued jobs stay queued and resume on the next start", len(left))
        for order in left:  # they will never get another event
            following = self._following.pop(order.job_id, None)
            if following is not None and following.task is not None:
                following.task.cancel()
        await self._tasks.wait(within_s=30)
        self._tasks.cancel()
        self._disk.shutdown(wait=True)
        self._image_files.shutdown(wait=True)  # images of posted grids: written now, or cut on the next use

    # -- inside ---------------------------------------------------------------------------

    async def _stored(self, call: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """``call(...)`` to the store, tried again while the storage refuses it (a disk I/O error, a full disk).

        What happens to a job is recorded before anyone is told of it, so its outcome waits for the disk
        rather than being lost (a follower that gave up left the job unfinished and unrefunded until the
        bot restarted). Each try is one transaction that changed nothing when it was refused.
        """
        refused = Backoff()
        what = f"{call.__name__} of job {args[0]}" if args else call.__name__
        while True:
            try:
                result = await call(*args, **kwargs)
            except StorageUnavailable as error:
                delay = refused.refused()
                if refused.worth_logging:
                    log.warning("%s was refused (%s); trying again every few seconds", what, error)
                await asyncio.sleep(delay)
                continue
            if refusals := refused.reset():
                log.warning("%s was recorded after %d refusal(s)", what, refusals)
            return result

    async def _job(self, job_id: int) -> Job:
        job = await self.store.get_job(job_id)
        if job is None:
            raise JobNotFound(f"Job {job_id} does not exist (it may have been deleted).")
        return job

    async def _with_member_defaults(self, options: ImagineOptions, origin: Origin) -> tuple[ImagineOptions, list[str]]:
        """``options`` with the member's ``/settings`` defaults where nothing was given; notices for any skipped."""
        preferences = await self.store.member_preferences(origin.user_id)
        notices: list[str] = []
        given: dict[str, object] = {}
        if options.model is None and preferences.model is not None:
            if preferences.model in await self.enabled_models(origin.guild_id):
                given["model"] = preferences.model
            else:
                notices.append(f"Your default model {preferences.model} is not available here; the server's was used.")
        for name in ("aspect", "steps", "guidance", "count", "negative"):
            value = getattr(preferences, name)
            if value is not None and getattr(options, name) in (None, ""):
                given[name] = value
        if options.style is None and preferences.style is not None:
            styles = {style.name.casefold() for style in await self.styles(origin.guild_id)}
            if preferences.style.casefold() in styles:
                given["style"] = preferences.style
            else:
                notices.append(f"Your default style {preferences.style} is not on this server; no style was used.")
        return replace(options, **given), notices  # type: ignore[arg-type]

    async def styles(self, guild_id: int | None) -> list[Style]:
        return await self.store.styles(guild_id) if guild_id is not None else []

    async def _style(self, guild_id: int | None, name: str) -> Style:
        for style in await self.styles(guild_id):
            if style.name.casefold() == name.casefold():
                return style
        raise InvalidRequest(f"This server has no style named `{name[:40]}`; /style list shows them.")

    def _remixed(self, recipe: Recipe, prompt: str | None) -> Recipe:
        """``recipe`` with the prompt a member typed in the Remix window, checked like any prompt."""
        if prompt is None:
            return recipe
        return recipe.with_prompt(check_prompt_text(prompt, max_chars=self.settings.prompt_max_chars))

    async def _finished_image(self, job_id: int, index: int) -> Job:
        """A finished job that has an image ``index`` that may be used."""
        parent = await self._job(job_id)
        if parent.status != "done":
            raise InvalidRequest("That job has not finished yet; wait for its images first.")
        if not 0 <= index < len(parent.image_paths):
            raise JobNotFound(f"Job {job_id} has no image {index + 1}.")
        if index in parent.withheld:
            raise NotAllowed("That image was withheld by the content filter, so it cannot be upscaled or varied.")
        return parent

    async def _source_of(self, recipe: Recipe) -> bytes | None:
        """The encoded image a job starts from (a parent's image, or a member's picture), read off the event loop."""
        if recipe.from_upload and recipe.source is not None:
            try:
                return await asyncio.to_thread(read_source_image, Path(recipe.source))
            except InvalidRequest:
                raise JobNotFound("The picture this job starts from is no longer available.") from None
        if not recipe.from_image or recipe.parent_job_id is None or recipe.parent_image is None:
            return None
        parent = await self._job(recipe.parent_job_id)
        if recipe.parent_image >= len(parent.image_paths):
            raise JobNotFound(f"Job {parent.id} has no image {recipe.parent_image + 1}.")
        paths = await self.image_files(parent)
        try:
            return await asyncio.to_thread(read_source_image, paths[recipe.parent_image])
        except InvalidRequest:
            # Say which job, not where the server keeps its files.
            raise JobNotFound(
                f"The images of job {parent.id} are no longer available, so they cannot be used."
            ) from None

    async def _let_go_of_picture(self, source: str | None) -> None:
        """Delete a member's picture once no job may start from it: none waits or runs, no result of one is posted.

        Tidying only: whatever stops it is logged, never passed on to cost a member the outcome being told (the
        next start-up's sweep deletes what it left).
        """
        if source is None or not self._pictures.owns(source):
            return
        try:
            if not await self.store.source_in_use(source):
                await self._pictures.let_go(source)
        except Exception:
            log.warning("could not delete a member's picture no job uses (%s)", source, exc_info=True)

    async def _enqueue(self, following: _Following, source: bytes | None, *, resumed: bool = False) -> int:
        """Compile the job into the request a worker runs (in a thread: an edit's canvas is laid out), and queue it."""
        job = following.job
        inbox: asyncio.Queue[JobEvent] = asyncio.Queue()
        classify = following.decision.classify_images
        order = await asyncio.to_thread(work_order, job.id, job.user_id, job.recipe, source, classify=classify)
        position = self.worker.submit(order, inbox.put_nowait, resumed=resumed)
        # Only once the worker took it: a refused job must leave nothing waiting forever.
        self._following[job.id] = following
        following.task = self._tasks.spawn(self._follow(following, inbox), name=f"job-{job.id}")
        return position

    async def _follow(self, following: _Following, inbox: asyncio.Queue[JobEvent]) -> None:
        """Record one job's events in order and pass them on, until it ends."""
        job = following.job
        try:
            while True:
                event = await inbox.get()
                match event:
                    case Queued() | Progress():
                        self._publish(event)
                    case Started():  # the dispatcher recorded it, with the attempt's token
                        self._publish(event)
                    case Finished():
                        try:
                            result = await self._finish(following, event)
                        except OSError as error:  # the grid could not be written: the job cannot go on
                            log.warning("job %s: could not save its result (%s); failing it", job.id, error)
                            await self._stored(self.store.mark_failed, job.id, RESULT_NOT_SAVED)
                            await self._stored(self.store.refund, job.id, job.cost, "result not saved")
                            await self._let_go_of_picture(job.recipe.source)
                            self._publish(Failed(job.id, RESULT_NOT_SAVED))
                            return
                        if result is not None:
                            self._publish(Completed(job.id, result))  # the grid is posted first...
                            if not self._closed:  # ...while each image's file is cut from it (else: on use)
                                self._write_images(result.job)
                        return
                    case Failed(message=message):
                        await self._stored(self.store.mark_failed, job.id, message)
                        await self._stored(self.store.refund, job.id, job.cost, "failed")
                        await self._let_go_of_picture(job.recipe.source)
                        self._publish(event)
                        return
                    case Cancelled():
                        await self._stored(self.store.mark_cancelled, job.id)
                        await self._stored(self.store.refund, job.id, job.cost, "cancelled")
                        await self._let_go_of_picture(job.recipe.source)
                        self._publish(event)
                        return
        finally:
            self._following.pop(job.id, None)

    async def _finish(self, following: _Following, finished: Finished) -> JobResult | None:
        """Write the files the worker made, then record the job done, if its attempt is still the current one."""
        job, output = following.job, finished.output
        loop = asyncio.get_running_loop()
        paths = await loop.run_in_executor(self._disk, self._results.write, job.id, output)
        recorded = await self._stored(
            self.store.mark_done,
            job.id,
            image_paths=[str(path) for path in paths],
            withheld=output.withheld,
            timings=dict(output.timings),
            attempt_token=output.token,
        )
        if not recorded:
            log.info("job %s: a result of attempt %d came after the job moved on; dropped", job.id, output.attempt)
            return None
        refunded = 0
        if output.withheld:
            refunded = refund_for_withheld(job.cost, output.count, len(output.withheld))
            await self._stored(self.store.refund, job.id, refunded, "withheld by the image classifier")
        stored = await self._stored(self._job, job.id)
        return JobResult(stored, output.grid, tuple(paths), frozenset(output.withheld), refunded)

    def _write_images(self, job: Job) -> asyncio.Future[None]:
        """Write the job's image files from its grid, once at a time; a failure is logged, and retried on use."""
        writing = self._writing_images.get(job.id)
        if writing is None:
            writing = asyncio.get_running_loop().run_in_executor(self._image_files, self._results.write_images, job)
            self._writing_images[job.id] = writing

            def written(done: asyncio.Future[None]) -> None:
                self._writing_images.pop(job.id, None)
                if not done.cancelled() and (error := done.exception()) is not None:
                    log.warning("could not write the images of job %s: %s", job.id, error)

            writing.add_done_callback(written)
        return writing

    async def image_files(self, job: Job) -> tuple[Path, ...]:
        """A finished job's image files, each cut from its grid first if it is not written yet.

        The files may still be missing when the grid itself is gone; callers check.
        """
        try:
            await asyncio.shield(self._write_images(job))
        except (OSError, ValueError):  # the grid is gone or damaged (logged where it was written)
            pass
        return tuple(Path(path) for path in job.image_paths)

    def _publish(self, event: ServiceEvent) -> None:
        following = self._following.get(event.job_id)
        own = following.listener if following is not None else None
        for listener in [own] if own is not None else list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("a listener failed on %s of job %s", type(event).__name__, event.job_id)
        self._observe(event)

    def _observe(self, event: ObservedEvent) -> None:
        for observer in list(self._observers):
            try:
                observer(event)
            except Exception:
                log.exception("an observer failed on %s of job %s", type(event).__name__, event.job_id)

"""The service: admits jobs, hands them to the worker, records and delivers outcomes.

A request is checked in this order, and nothing is charged or queued unless it
passes every check: options (done by the caller with ``bot.jobs.requests``), the prompt
filter and NSFW policy of the channel, the text encoder's token limit, room in the
queue, then the quota check-and-charge (one SQLite transaction that also records
the job). Outcomes are written back to SQLite and whatever was not delivered is
refunded: a failed or cancelled job entirely, a withheld image its share.

Front ends pass a listener with each request, or listen to every job that has none
(jobs resumed after a restart) with ``add_listener``. Listeners get ``Queued``,
``Started``, ``Progress``, ``Completed``, ``Failed`` and ``Cancelled``, in order,
after SQLite has recorded the change.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from bot.errors import InvalidRequest, JobNotFound, NotAllowed, PromptRejected, QueueFull, QuotaExceeded
from bot.images.rendering import EncodedImage, GenerationParameters, compose_grid, encode_image, load_source_image
from bot.jobs.events import Cancelled, Failed, Finished, JobEvent, Progress, Queued, Started
from bot.jobs.requests import (
    MAX_SIDE,
    GenerationRequest,
    ImagineOptions,
    JobKind,
    random_seeds,
    resolve_imagine,
)
from bot.policy import content_filter
from bot.policy.nsfw import NsfwDecision, NsfwMode, decide
from bot.policy.pricing import job_cost, refund_for_withheld
from bot.runtime.tasks import log_failure
from bot.runtime.threads import background_executor
from bot.workers.local import GenerationWorker, WorkItem
from db.errors import QuotaExhausted
from db.records import DM_GUILD_ID, Delivery, QuotaRule  # quotas of direct messages are kept under guild 0
from db.store import JobRecord, NewJob, Store
from models.presets import DEFAULT_SCHEDULER
from models.safety import blurred_placeholder, withheld_indices
from models.types import BatchSpec, ImageTask, ModelPreset, Operation

if TYPE_CHECKING:
    from PIL import Image

    from bot.settings import Settings
    from models.safety import ImageClassifier

log = logging.getLogger(__name__)

UPSCALE_FACTOR = 2
DELIVERY_MAX_BACKOFF_S = 60.0
OPERATIONS = {
    JobKind.IMAGINE: Operation.TXT2IMG,
    JobKind.REROLL: Operation.TXT2IMG,
    JobKind.VARIATION: Operation.VARIATION,
    JobKind.UPSCALE: Operation.UPSCALE,
}


@dataclass(frozen=True, slots=True)
class Origin:
    """Who asks, and where: everything the policy depends on."""

    user_id: int
    guild_id: int | None = None
    channel_id: int | None = None
    role_ids: tuple[int, ...] = ()
    channel_age_restricted: bool = False
    # The owner's own console (the command line): no quota, no Discord channel to protect.
    console: bool = False

    @property
    def is_dm(self) -> bool:
        return self.guild_id is None and not self.console

    @property
    def quota_guild(self) -> int:
        return self.guild_id if self.guild_id is not None else DM_GUILD_ID


@dataclass(frozen=True, slots=True)
class SubmittedJob:
    job_id: int
    position: int
    request: GenerationRequest
    cost: int
    notice: str | None = None  # something the user should know, such as a prompt cut at the token limit


@dataclass(frozen=True, slots=True, eq=False)
class JobResult:
    """A finished job as stored: files on disk, which images were withheld, what was refunded."""

    job: JobRecord
    parameters: GenerationParameters
    grid: EncodedImage
    image_paths: tuple[Path, ...]
    withheld: frozenset[int]
    refunded: int


@dataclass(frozen=True, slots=True)
class WaitingJob:
    job_id: int
    position: int  # 0: running now; 1: next
    prompt: str


@dataclass(frozen=True, slots=True)
class DeliveryVerdict:
    """After a failed try to post a result: retry in so many seconds, or ``None``: given up, refunded."""

    retry_in_s: float | None
    refunded: int


@dataclass(frozen=True, slots=True, eq=False)
class Completed:
    job_id: int
    result: JobResult


ServiceEvent = Queued | Started | Progress | Completed | Failed | Cancelled
ServiceListener = Callable[[ServiceEvent], None]


class GenerationService:
    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        worker: GenerationWorker,
        classifier: ImageClassifier | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.worker = worker
        self._classifier = classifier
        self._clock = clock
        # Classification and PNG encoding: below the event loop's priority, never in its way.
        self._cpu = background_executor(2, "latentcord-cpu")
        self._listeners: list[ServiceListener] = []
        self._followers: dict[int, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._decisions: dict[int, NsfwDecision] = {}
        self._job_listeners: dict[int, ServiceListener] = {}
        self._closed = False

    # -- listeners -------------------------------------------------------------------

    def add_listener(self, listener: ServiceListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: ServiceListener) -> None:
        self._listeners.remove(listener)

    # -- admission ---------------------------------------------------------------------

    async def imagine(
        self, options: ImagineOptions, origin: Origin, listener: ServiceListener | None = None
    ) -> SubmittedJob:
        """Check, charge and queue a new ``/imagine``. Raises a ``DomainError`` or ``ModelError``."""
        # 1. Options and the flags typed in the prompt through the one parser, every value checked,
        #    before a model is loaded for them.
        checked = options.checked(models=self.settings.models, max_prompt_chars=self.settings.prompt_max_chars)
        # 2. The chosen model's defaults.
        preset = await self.worker.preset(checked.model)
        request = resolve_imagine(checked, preset)
        return await self.submit(request, origin, listener)

    async def reroll(self, job_id: int, origin: Origin, listener: ServiceListener | None = None) -> SubmittedJob:
        """The same request with new seeds; re-rolling variations makes new variations of the same image."""
        parent = await self._job(job_id)
        if parent.kind == JobKind.VARIATION and parent.parent_job_id is not None and parent.parent_image is not None:
            return await self.variation(
                parent.parent_job_id, parent.parent_image, origin, listener, strength=parent.strength
            )
        request = _request_from_job(parent, kind=JobKind.REROLL, seeds=random_seeds(len(parent.seeds)))
        request = replace(request, parent_job_id=parent.id, parent_image=None, strength=0.0)
        return await self.submit(request, origin, listener)

    async def variation(
        self,
        job_id: int,
        index: int,
        origin: Origin,
        listener: ServiceListener | None = None,
        *,
        strength: float | None = None,
    ) -> SubmittedJob:
        """Four new images from image ``index`` of a job (0-based); from an upscale, at the original size."""
        parent, source = await self._parent_image(job_id, index)
        request = _request_from_job(parent, kind=JobKind.VARIATION, seeds=random_seeds(4))
        if parent.kind == JobKind.UPSCALE:
            request = replace(request, width=parent.width // UPSCALE_FACTOR, height=parent.height // UPSCALE_FACTOR)
        strength = strength if strength is not None else self.settings.variation_strength
        request = replace(
            request,
            steps=_img2img_steps(parent.steps, strength),
            strength=strength,
            parent_job_id=parent.id,
            parent_image=index,
            source_image=source,
        )
        return await self.submit(request, origin, listener)

    async def upscale(
        self, job_id: int, index: int, origin: Origin, listener: ServiceListener | None = None
    ) -> SubmittedJob:
        parent, source = await self._parent_image(job_id, index)
        width, height = parent.width * UPSCALE_FACTOR, parent.height * UPSCALE_FACTOR
        if max(width, height) > MAX_SIDE:
            raise InvalidRequest(
                f"This image is already {parent.width}x{parent.height}; upscales stop at {MAX_SIDE} px."
            )
        request = _request_from_job(parent, kind=JobKind.UPSCALE, seeds=(parent.seeds[index],))
        request = replace(
            request,
            width=width,
            height=height,
            steps=_img2img_steps(parent.steps, self.settings.upscale_strength),
            strength=self.settings.upscale_strength,
            parent_job_id=parent.id,
            parent_image=index,
            source_image=source,
        )
        return await self.submit(request, origin, listener)

    async def submit(
        self, request: GenerationRequest, origin: Origin, listener: ServiceListener | None = None
    ) -> SubmittedJob:
        """Admit a complete request. ``listener`` gets this job's events; without one, the global listeners do."""
        # 1. The prompt against the guild's filter and this channel's NSFW policy.
        decision = await self.nsfw_decision(origin)
        await self.check_prompt(request.prompt, origin, decision)
        # 2. The text encoder's limit: a longer prompt runs, but never cut without saying so.
        preset = await self.worker.preset(request.model)
        notice = None
        # CLIP's byte-level BPE makes at most one token per byte (plus BOS and EOS), so a short
        # prompt needs no tokenizer, and most admissions skip the trip to a thread.
        fits = len(request.prompt.encode()) + 2 <= preset.max_prompt_tokens
        tokens = 0 if fits else await self.worker.count_prompt_tokens(request.model, request.prompt)
        if tokens > preset.max_prompt_tokens:
            notice = (
                f"Your prompt is {tokens} tokens long and the model reads only the first "
                f"{preset.max_prompt_tokens}, so its end is ignored; shorten it to keep every word."
            )
        # 3. Room in the queue, before anything is charged.
        self.worker.check_room(origin.user_id)
        source = await self._load_source(request)
        # 4. Check and charge the quota and record the job, in one transaction.
        cost = self.cost_of(request, preset)
        limit = None if origin.console else QuotaRule(origin.role_ids, self.settings.daily_credits)
        try:
            job = await self.store.admit_job(_new_job(request, origin, cost, decision), cost=cost, limit=limit)
        except QuotaExhausted as exhausted:
            raise QuotaExceeded(self._quota_sentence(exhausted)) from None
        # 5. Queue it. A queue that filled up in between refunds at once.
        self._decisions[job.id] = decision
        if listener is not None:
            self._job_listeners[job.id] = listener
        try:
            position = self._enqueue(job, request, source)
        except QueueFull:
            self._job_listeners.pop(job.id, None)
            self._decisions.pop(job.id, None)
            await self.store.mark_failed(job.id, "the queue was full")
            await self.store.refund(job.id, cost, "queue full")
            raise
        return SubmittedJob(job_id=job.id, position=position, request=request, cost=cost, notice=notice)

    async def nsfw_decision(self, origin: Origin) -> NsfwDecision:
        if origin.console:
            return NsfwDecision(allow_nsfw_prompts=True, classify_images=False)
        if origin.guild_id is None:
            return decide(NsfwMode.BLOCK, channel_age_restricted=False, is_dm=True)
        settings = await self.store.guild_settings(origin.guild_id)
        mode = NsfwMode(settings.nsfw_mode)
        return decide(mode, channel_age_restricted=origin.channel_age_restricted, is_dm=False)

    async def check_prompt(self, prompt: str, origin: Origin, decision: NsfwDecision) -> None:
        if content_filter.is_effectively_empty(prompt):
            raise InvalidRequest("The prompt is empty: describe the image you want.")
        terms = await self.store.filter_terms(origin.guild_id) if origin.guild_id is not None else []
        verdict = content_filter.check_prompt(prompt, terms, nsfw_allowed=decision.allow_nsfw_prompts)
        if verdict.blocked:
            if verdict.source == "always":
                message = "Your prompt asks for something that is not allowed anywhere on this bot."
            elif verdict.source == "guild":
                message = "Your prompt contains a term this server's moderators have blocked; rephrase it."
            elif origin.guild_id is None:
                message = "NSFW prompts are not allowed in direct messages."
            elif (await self.store.guild_settings(origin.guild_id)).nsfw_mode == NsfwMode.AGE_RESTRICTED:
                message = "NSFW prompts are not allowed in this channel, only in this server's age-restricted channels."
            else:
                message = "NSFW prompts are not allowed in this channel: this server blocks them everywhere."
            raise PromptRejected(message, rule=verdict.rule)

    @staticmethod
    def cost_of(request: GenerationRequest, preset: ModelPreset) -> int:
        return job_cost(
            images=request.count,
            width=request.width,
            height=request.height,
            steps=request.steps,
            native_width=preset.width,
            native_height=preset.height,
            default_steps=preset.steps,
        )

    def _quota_sentence(self, exhausted: QuotaExhausted) -> str:
        left = max(0, exhausted.limit - exhausted.used)
        when = ""
        if exhausted.next_free_at is not None:
            when = f"; credits free up {describe_wait(exhausted.next_free_at - self._clock())}"
        return (
            f"This job costs {exhausted.cost} credits but you have {left} of {exhausted.limit} left "
            f"in the last 24 hours{when}."
        )

    # -- jobs after admission ------------------------------------------------------------

    async def cancel(self, job_id: int, *, actor_id: int, is_moderator: bool = False) -> None:
        job = await self._job(job_id)
        if job.user_id != actor_id and not is_moderator:
            raise NotAllowed("Only the person who asked for this job or a moderator can cancel it.")
        if not self.worker.cancel(job_id):
            raise InvalidRequest("This job has already finished.")

    async def resume(self) -> list[int]:
        """Requeue jobs a crash or a restart left unfinished, in their original order, uncharged."""
        resumed: list[int] = []
        for job in await self.store.requeue_unfinished():
            request = _request_from_job(job, kind=JobKind(job.kind), seeds=job.seeds)
            try:
                source = await self._source_of(job)
            except (InvalidRequest, JobNotFound) as missing:
                log.warning("job %s cannot resume: %s", job.id, missing)
                await self.store.mark_failed(job.id, str(missing))
                await self.store.refund(job.id, job.cost, "source image gone")
                continue
            self._decisions[job.id] = NsfwDecision(
                allow_nsfw_prompts=job.nsfw_allowed, classify_images=not job.nsfw_allowed
            )
            try:
                self._enqueue(job, request, source)
            except QueueFull:
                log.warning("job %s stays queued: no room after the restart", job.id)
                continue
            resumed.append(job.id)
        return resumed

    def waiting_jobs(self, user_id: int) -> list[WaitingJob]:
        """A member's jobs still to finish, in the order they will run (position 0: running now)."""
        return [
            WaitingJob(item.job_id, self.worker.position(item.job_id) or 0, item.tasks[0].prompt)
            for item in self.worker.pending_jobs(user_id)
        ]

    async def job(self, job_id: int) -> JobRecord | None:
        """A job as recorded, or ``None`` if there is no such job."""
        return await self.store.get_job(job_id)

    async def record_status_message(
        self, job_id: int, *, message_id: int | None, interaction_token: str, token_created_at: float
    ) -> None:
        """Where a job's status message is, and the interaction token that may edit it for 15 minutes."""
        await self.store.set_delivery(
            job_id, message_id=message_id, interaction_token=interaction_token, token_created_at=token_created_at
        )

    # -- delivery of results ------------------------------------------------------------

    async def delivered(self, job_id: int, message_id: int | None) -> None:
        """A message now holds the job's result: stop retrying it, here and after a restart."""
        await self.store.mark_delivered(job_id, message_id)

    async def delivery_failed(self, job_id: int) -> DeliveryVerdict:
        """One try to post a result failed: when to try again, or that it was given up and refunded.

        Tries back off from ``DELIVERY_FIRST_RETRY_S`` (doubling, at most a minute apart) for
        ``DELIVERY_GIVE_UP_S`` after the result was ready, counted across restarts. Past that the
        job's remaining credits are refunded in the same transaction that gives it up.
        """
        job = await self.store.record_delivery_failure(job_id)
        if job.delivery != Delivery.PENDING:
            return DeliveryVerdict(retry_in_s=None, refunded=0)
        started = job.delivery_started_at if job.delivery_started_at is not None else self._clock()
        first = self.settings.delivery_first_retry_s
        delay = min(DELIVERY_MAX_BACKOFF_S, first * 2 ** max(job.delivery_attempts - 1, 0))
        if self._clock() + delay <= started + self.settings.delivery_give_up_s:
            return DeliveryVerdict(retry_in_s=delay, refunded=0)
        refunded = await self.store.abandon_delivery(job_id, "result could not be posted to Discord")
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
                results.append(await asyncio.to_thread(self._stored_result, job))
            except OSError as missing:
                log.warning("the result of job %s is gone from disk (%s); refunding it", job.id, missing)
                await self.store.abandon_delivery(job.id, "result files missing")
        return results

    def _stored_result(self, job: JobRecord) -> JobResult:
        request = _request_from_job(job, kind=JobKind(job.kind), seeds=job.seeds)
        folder = self.settings.images_dir / str(job.id)
        found = sorted(folder.glob(_grid_stem(job.id) + ".*"))  # .png, or .jpg when the PNG was too large
        if not found:
            raise FileNotFoundError(f"no grid in {folder}")
        content_type = "image/png" if found[0].suffix.lower() == ".png" else "image/jpeg"
        grid = EncodedImage(data=found[0].read_bytes(), filename=found[0].name, content_type=content_type)
        paths = tuple(Path(path) for path in job.image_paths)
        return JobResult(job, _parameters_of(request, job.seeds), grid, paths, frozenset(job.withheld), job.refunded)

    async def close(self) -> None:
        """Stop taking jobs, let the running batch finish, and leave the rest queued in SQLite."""
        if self._closed:
            return
        self._closed = True
        left = await self.worker.stop()
        if left:
            log.info("%d queued jobs stay queued and resume on the next start", len(left))
        for item in left:  # they will never get another event
            follower = self._followers.pop(item.job_id, None)
            if follower is not None:
                follower.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=30)
        for task in self._tasks:
            task.cancel()
        self._cpu.shutdown(wait=True)

    async def _job(self, job_id: int) -> JobRecord:
        job = await self.store.get_job(job_id)
        if job is None:
            raise JobNotFound(f"Job {job_id} does not exist (it may have been deleted).")
        return job

    async def _parent_image(self, job_id: int, index: int) -> tuple[JobRecord, Path]:
        parent = await self._job(job_id)
        if parent.status != "done":
            raise InvalidRequest("That job has not finished yet; wait for its images first.")
        if not 0 <= index < len(parent.image_paths):
            raise JobNotFound(f"Job {job_id} has no image {index + 1}.")
        if index in parent.withheld:
            raise NotAllowed("That image was withheld by the content filter, so it cannot be upscaled or varied.")
        return parent, Path(parent.image_paths[index])

    async def _load_source(self, request: GenerationRequest) -> Image.Image | None:
        """Decode the image a variation or upscale starts from, off the event loop."""
        if request.source_image is None:
            return None
        try:
            return await asyncio.to_thread(load_source_image, request.source_image)
        except InvalidRequest:
            if request.parent_job_id is None:
                raise
            # Say which job, not where the server keeps its files.
            raise JobNotFound(
                f"The images of job {request.parent_job_id} are no longer stored, so they cannot be used."
            ) from None

    async def _source_of(self, job: JobRecord) -> Image.Image | None:
        if job.parent_job_id is None or job.parent_image is None or job.kind == JobKind.REROLL:
            return None
        parent = await self._job(job.parent_job_id)
        if job.parent_image >= len(parent.image_paths):
            raise JobNotFound(f"Job {parent.id} has no image {job.parent_image + 1}.")
        request = replace(
            _request_from_job(job, kind=JobKind(job.kind), seeds=job.seeds),
            source_image=Path(parent.image_paths[job.parent_image]),
        )
        return await self._load_source(request)

    def _enqueue(self, job: JobRecord, request: GenerationRequest, source: Image.Image | None) -> int:
        spec = BatchSpec(
            model=request.model,
            operation=OPERATIONS[request.kind],
            width=request.width,
            height=request.height,
            steps=request.steps,
            guidance=request.guidance,
            scheduler=request.scheduler,
            strength=request.strength,
        )
        tasks = tuple(
            ImageTask(prompt=request.prompt, negative_prompt=request.negative_prompt, seed=seed, init_image=source)
            for seed in request.seeds
        )
        inbox: asyncio.Queue[JobEvent] = asyncio.Queue()
        position = self.worker.submit(WorkItem(job.id, job.user_id, spec, tasks), inbox.put_nowait)
        # Only once the worker took it: a refused job must leave no follower waiting forever.
        follower = asyncio.create_task(self._follow(job, request, inbox), name=f"job-{job.id}")
        self._followers[job.id] = follower
        self._track(follower)
        return position

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(log_failure("a job follower"))

    async def _follow(self, job: JobRecord, request: GenerationRequest, inbox: asyncio.Queue[JobEvent]) -> None:
        """Record one job's events in order and pass them on, until it ends."""
        try:
            while True:
                event = await inbox.get()
                match event:
                    case Queued() | Progress():
                        self._publish(event)
                    case Started():
                        await self.store.mark_running(job.id)
                        self._publish(event)
                    case Finished():
                        result = await self._deliver(job, request, event)
                        self._publish(Completed(job.id, result))
                        return
                    case Failed(message=message):
                        await self.store.mark_failed(job.id, message)
                        await self.store.refund(job.id, job.cost, "failed")
                        self._publish(event)
                        return
                    case Cancelled():
                        await self.store.mark_cancelled(job.id)
                        await self.store.refund(job.id, job.cost, "cancelled")
                        self._publish(event)
                        return
        finally:
            self._followers.pop(job.id, None)
            self._decisions.pop(job.id, None)
            self._job_listeners.pop(job.id, None)

    async def _deliver(self, job: JobRecord, request: GenerationRequest, finished: Finished) -> JobResult:
        decision = self._decisions.get(job.id, NsfwDecision(allow_nsfw_prompts=False, classify_images=True))
        parameters = _parameters_of(request, finished.seeds)
        loop = asyncio.get_running_loop()
        grid, paths, withheld = await loop.run_in_executor(
            self._cpu, self._finish_images, job.id, finished.images, parameters, decision
        )
        timings = dict(finished.timings)
        await self.store.mark_done(
            job.id, image_paths=[str(path) for path in paths], withheld=sorted(withheld), timings=timings
        )
        refunded = 0
        if withheld:
            refunded = refund_for_withheld(job.cost, len(finished.images), len(withheld))
            await self.store.refund(job.id, refunded, "withheld by the image classifier")
        stored = await self._job(job.id)
        return JobResult(stored, parameters, grid, tuple(paths), frozenset(withheld), refunded)

    def _finish_images(
        self,
        job_id: int,
        images: Sequence[Image.Image],
        parameters: GenerationParameters,
        decision: NsfwDecision,
    ) -> tuple[EncodedImage, list[Path], set[int]]:
        """CPU thread: classify, blur what is withheld, write each image and the grid."""
        withheld: set[int] = set()
        if decision.classify_images and self._classifier is not None:
            scores = self._classifier.nsfw_scores(images)
            withheld = set(withheld_indices(scores, self.settings.nsfw_threshold))
        folder = self.settings.images_dir / str(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        paths: list[Path] = []
        shown: list[Image.Image] = []
        for index, image in enumerate(images):
            single = replace(parameters, seeds=(parameters.seeds[index],))
            encoded = encode_image(image, single, stem=str(index + 1))
            path = folder / encoded.filename
            _write_atomically(path, encoded.data)
            paths.append(path)
            shown.append(blurred_placeholder(image) if index in withheld else image)
        grid = encode_image(compose_grid(shown), parameters, stem=_grid_stem(job_id))
        _write_atomically(folder / grid.filename, grid.data)
        return grid, paths, withheld

    def _publish(self, event: ServiceEvent) -> None:
        own = self._job_listeners.get(event.job_id)
        for listener in [own] if own is not None else list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("a listener failed on %s of job %s", type(event).__name__, event.job_id)


def _parameters_of(request: GenerationRequest, seeds: tuple[int, ...]) -> GenerationParameters:
    return GenerationParameters(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        seeds=seeds,
        model=request.model,
        steps=request.steps,
        guidance=request.guidance,
        width=request.width,
        height=request.height,
        scheduler=request.scheduler,
        strength=request.strength or None,
    )


def _grid_stem(job_id: int) -> str:
    return f"latentcord-{job_id}"


def _img2img_steps(steps: int, strength: float) -> int:
    """img2img runs ``steps * strength`` of its steps: make sure at least one runs."""
    return max(steps, math.ceil(1 / strength))


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_suffix(path.suffix + ".part")
    partial.write_bytes(data)
    partial.replace(path)


def _new_job(request: GenerationRequest, origin: Origin, cost: int, decision: NsfwDecision) -> NewJob:
    return NewJob(
        kind=request.kind.value,
        parent_job_id=request.parent_job_id,
        parent_image=request.parent_image,
        guild_id=origin.guild_id,
        channel_id=origin.channel_id,
        user_id=origin.user_id,
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        model=request.model,
        width=request.width,
        height=request.height,
        steps=request.steps,
        guidance=request.guidance,
        strength=request.strength,
        seeds=request.seeds,
        cost=cost,
        scheduler=request.scheduler,
        nsfw_allowed=not decision.classify_images,
    )


def _request_from_job(job: JobRecord, *, kind: JobKind, seeds: tuple[int, ...]) -> GenerationRequest:
    return GenerationRequest(
        kind=kind,
        prompt=job.prompt,
        negative_prompt=job.negative_prompt,
        model=job.model,
        width=job.width,
        height=job.height,
        steps=job.steps,
        guidance=job.guidance,
        seeds=seeds,
        scheduler=job.scheduler or DEFAULT_SCHEDULER,  # "" in rows from before schedulers were stored
        strength=job.strength or 0.0,
        parent_job_id=job.parent_job_id,
        parent_image=job.parent_image,
    )


def describe_wait(seconds: float) -> str:
    """'in 3 h 12 min' — a wait as people say it."""
    minutes = max(1, math.ceil(seconds / 60))
    if minutes < 60:
        return f"in {minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"in {hours} h {minutes} min" if minutes else f"in {hours} h"

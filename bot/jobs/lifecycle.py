"""A job's life after admission: compiled and queued, followed through its events, recorded, its files written.

``JobLifecycle`` is the service's half that the workers drive. ``queue`` compiles an admitted job
into the request a worker runs (``bot.jobs.generation``, in a thread) and hands it to the
``WorkerClient``; a follower task per job then records each event in SQLite before passing it on:
to the job's own listener, or, for a job without one (resumed after a restart), to every
listener given to ``add_listener``; observers (``add_observer``) see every job's events besides.
Outcomes are written back and whatever was not delivered is refunded: a failed or cancelled job
entirely, a withheld image its share. A finished job's grid is written first and posted; each
image's own file is cut from it afterwards, on a thread of its own.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.errors import InvalidRequest, JobNotFound, NotAllowed, QueueFull
from bot.images.archive import read_source_image
from bot.images.uploads import KeptPictures
from bot.jobs.events import Cancelled, Failed, Finished, JobEvent, Progress, Queued, Started
from bot.jobs.generation import work_order
from bot.jobs.outcomes import (
    Completed,
    Job,
    JobObserver,
    JobResult,
    ObservedEvent,
    ResultWriter,
    ServiceEvent,
    ServiceListener,
    WaitingJob,
)
from bot.jobs.references import job_image
from bot.jobs.stored import stored
from bot.policy.nsfw import NsfwDecision
from bot.policy.pricing import refund_for_withheld
from bot.runtime.tasks import TaskSet
from bot.runtime.threads import background_executor

if TYPE_CHECKING:
    from bot.jobs.recipe import Recipe
    from bot.workers.protocol import WorkerClient
    from db.store import Store

log = logging.getLogger(__name__)

#: Told with a job accepted while no GPU worker is online (workers on other hosts not started yet, say).
NO_WORKER_YET = "No GPU worker is online yet; your job starts when one is."
#: Told when a job's images were made but could not be written to ``IMAGES_DIR`` (a full disk, say).
RESULT_NOT_SAVED = "Its images were made but could not be saved on the bot's disk, so its credits are refunded."
#: Recorded for a job that could not be made into a request (a bug: it is refunded).
NOT_PREPARED = "it could not be prepared for the workers"


@dataclass(slots=True, eq=False)
class _Following:
    """What the service keeps of a job between admission and its last event."""

    job: Job
    decision: NsfwDecision
    listener: ServiceListener | None
    task: asyncio.Task[None] | None = None


class JobLifecycle:
    """Admitted jobs, from the queue to their files: the part of the service the workers drive."""

    def __init__(
        self, *, images_dir: Path, store: Store[Recipe], worker: WorkerClient, thumbnails: bool = False
    ) -> None:
        self.store = store
        self.worker = worker
        self._results = ResultWriter(images_dir, thumbnails=thumbnails)
        # Writing the files a worker made: below the event loop's priority, never in its way. Grids go
        # first, on their own thread; each image's own file is cut from its grid afterwards, on another.
        self._disk = background_executor(1, "latentcord-disk")
        self._image_files = background_executor(1, "latentcord-images")
        self.pictures = KeptPictures(images_dir, self._disk)  # members' pictures, on the disk thread
        self._writing_images: dict[int, asyncio.Future[None]] = {}
        self._listeners: list[ServiceListener] = []
        self._observers: list[JobObserver] = []
        self._following: dict[int, _Following] = {}
        self._tasks = TaskSet("a job follower")
        self._closed = False

    # -- who hears of jobs ---------------------------------------------------------------

    def add_listener(self, listener: ServiceListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: ServiceListener) -> None:
        self._listeners.remove(listener)

    def add_observer(self, observer: JobObserver) -> None:
        self._observers.append(observer)

    def remove_observer(self, observer: JobObserver) -> None:
        self._observers.remove(observer)

    def observe(self, event: ObservedEvent) -> None:
        """Tell every observer; one that raises is logged and skipped, never in the job's way."""
        for observer in list(self._observers):
            try:
                observer(event)
            except Exception:
                log.exception("an observer failed on %s (job %s)", type(event).__name__, event.job_id)

    # -- queueing ---------------------------------------------------------------------------

    async def queue(
        self,
        job: Job,
        decision: NsfwDecision,
        listener: ServiceListener | None,
        source: bytes | None,
        references: tuple[bytes, ...] = (),
        *,
        resumed: bool = False,
    ) -> int:
        """Compile an admitted job into the request a worker runs (in a thread: an edit's canvas is laid out)
        and queue it; its place in the queue. Raises ``QueueFull``, or what compiling raised (a bug)."""
        inbox: asyncio.Queue[JobEvent] = asyncio.Queue()
        classify = decision.classify_images
        order = await asyncio.to_thread(
            work_order, job.id, job.user_id, job.recipe, source, references, classify=classify
        )
        position = self.worker.submit(order, inbox.put_nowait, resumed=resumed)
        # Only once the worker took it: a refused job must leave nothing waiting forever.
        following = self._following[job.id] = _Following(job, decision, listener)
        following.task = self._tasks.spawn(self._follow(following, inbox), name=f"job-{job.id}")
        return position

    async def source_of(self, recipe: Recipe) -> bytes | None:
        """The encoded image a job starts from (a parent's image, or a member's picture), read off the event loop."""
        if recipe.from_upload and recipe.source is not None:
            try:
                return await asyncio.to_thread(read_source_image, Path(recipe.source))
            except InvalidRequest:
                raise JobNotFound("The picture this job starts from is no longer available.") from None
        if not recipe.from_image or recipe.parent_job_id is None or recipe.parent_image is None:
            return None
        parent = await self.job_named(recipe.parent_job_id)
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

    async def references_of(self, recipe: Recipe) -> tuple[bytes, ...]:
        """The encoded images that guide a job, in its recipe's order (kept pictures, images of jobs), read off
        the event loop; ``JobNotFound`` with a sentence naming the one that is gone."""
        read: list[bytes] = []
        for entry in recipe.reference_images:
            image = job_image(entry)
            if image is None:
                try:
                    read.append(await asyncio.to_thread(read_source_image, Path(entry)))
                except InvalidRequest:
                    raise JobNotFound("A picture this job is guided by is no longer available.") from None
                continue
            job = await self.job_named(image.job_id)
            if not 1 <= image.n <= len(job.image_paths):
                raise JobNotFound(f"Job {job.id} has no image {image.n}.")
            paths = await self.image_files(job)
            try:
                read.append(await asyncio.to_thread(read_source_image, paths[image.n - 1]))
            except InvalidRequest:
                raise JobNotFound(
                    f"The images of job {job.id} are no longer available, so they cannot be used."
                ) from None
        return tuple(read)

    async def resume(self) -> list[int]:
        """Requeue jobs a crash or a restart left unfinished, in their original order, uncharged; then delete
        the members' pictures no job may start from any more that the last run left (``KeptPictures.sweep``)."""
        resumed: list[int] = []
        for job in await self.store.requeue_unfinished():
            try:
                source = await self.source_of(job.recipe)
                references = await self.references_of(job.recipe)
            except (InvalidRequest, JobNotFound) as missing:
                log.warning("job %s cannot resume: %s", job.id, missing)
                await self.store.mark_failed(job.id, str(missing))
                await self.store.refund(job.id, job.cost, "source image gone")
                continue
            decision = NsfwDecision(allow_nsfw_prompts=job.nsfw_allowed, classify_images=not job.nsfw_allowed)
            try:
                await self.queue(job, decision, None, source, references, resumed=True)
            except QueueFull:
                log.warning("job %s stays queued: no room after the restart", job.id)
                continue
            except Exception:
                log.exception("job %s cannot resume: %s", job.id, NOT_PREPARED)
                await self.store.mark_failed(job.id, NOT_PREPARED)
                await self.store.refund(job.id, job.cost, "not prepared")
                continue
            resumed.append(job.id)
        try:  # tidying, which must not stop a start: the next one tries again
            swept = await self.pictures.sweep(await self.store.sources_in_use())
        except Exception:
            log.warning("could not sweep the members' pictures no job uses", exc_info=True)
        else:
            if swept:
                log.info("deleted %d members' pictures no job uses", len(swept))
        return resumed

    # -- jobs in the queue --------------------------------------------------------------------

    async def cancel(self, job_id: int, *, actor_id: int, is_moderator: bool = False) -> None:
        job = await self.job_named(job_id)
        if job.user_id != actor_id and not is_moderator:
            raise NotAllowed("Only the person who asked for this job or a moderator can cancel it.")
        if not self.worker.cancel(job_id):
            raise InvalidRequest("This job has already finished.")

    def waiting_reason(self) -> str | None:
        """Why queued jobs do not start, in a sentence (no GPU worker is online: they wait for one); else None."""
        return None if self.worker.health().workers > 0 else NO_WORKER_YET

    def waiting_jobs(self, user_id: int) -> list[WaitingJob]:
        """A member's jobs still to finish, in the order they will run (position 0: running now)."""
        return [
            WaitingJob(
                order.job_id, self.worker.position(order.job_id) or 0, order.recipe.prompt, self._cost(order.job_id)
            )
            for order in self.worker.pending_jobs(user_id)
        ]

    def _cost(self, job_id: int) -> int:
        following = self._following.get(job_id)
        return following.job.cost if following is not None else 0

    # -- finished jobs ---------------------------------------------------------------------

    async def job_named(self, job_id: int) -> Job:
        """Job ``job_id`` as recorded; ``JobNotFound`` with a sentence when there is none."""
        job = await self.store.get_job(job_id)
        if job is None:
            raise JobNotFound(f"Job {job_id} does not exist (it may have been deleted).")
        return job

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

    async def stored_result(self, job: Job) -> JobResult:
        """A finished job's result rebuilt from its files (``OSError`` when they are gone), off the event loop."""
        return await asyncio.to_thread(self._results.stored, job)

    async def result_deleted(self, job_id: int, message_id: int, *, actor_id: int, is_moderator: bool = False) -> None:
        """Its requester or a moderator deleted the message ``message_id`` holding a job's result (Delete, ❌).

        The member's picture it started from is deleted with it once no other job may start from it.
        """
        job = await self.job_named(job_id)
        if job.user_id != actor_id and not is_moderator:
            raise NotAllowed("Only the person who asked for this image or a moderator can delete it.")
        if await self.store.mark_result_deleted(job_id, message_id=message_id):
            await self.let_go_of_pictures(job.recipe)

    async def results_message_deleted(self, message_ids: list[int]) -> list[int]:
        """Messages were deleted in Discord (by anyone, or with their channel): the results they held are deleted,
        as a Delete would; the ids of those jobs."""
        return await self._results_gone(await self.store.results_message_deleted(message_ids))

    async def results_channel_deleted(self, channel_id: int) -> list[int]:
        """A channel or thread was deleted with its messages: the results it held are deleted; their job ids."""
        return await self._results_gone(await self.store.results_channel_deleted(channel_id))

    async def _results_gone(self, job_ids: list[int]) -> list[int]:
        for job_id in job_ids:
            job = await self.store.get_job(job_id)
            if job is not None:
                await self.let_go_of_pictures(job.recipe)
        return job_ids

    async def image_files(self, job: Job) -> tuple[Path, ...]:
        """A finished job's image files, each cut from its grid first if it is not written yet.

        The files may still be missing when the grid itself is gone; callers check.
        """
        try:
            await asyncio.shield(self._write_images(job))
        except (OSError, ValueError):  # the grid is gone or damaged (logged where it was written)
            pass
        return tuple(Path(path) for path in job.image_paths)

    async def let_go_of_pictures(self, recipe: Recipe) -> None:
        """Delete the kept pictures a job named (its source, its references) that no job or moodboard names now."""
        for path in recipe.pictures:
            await self.let_go_of_picture(path)

    async def let_go_of_picture(self, source: str | None) -> None:
        """Delete a member's picture once no job may start from it: none waits or runs, no result of one is posted.

        Tidying only: whatever stops it is logged, never passed on to cost a member the outcome being told (the
        next start-up's sweep deletes what it left).
        """
        if source is None or not self.pictures.owns(source):
            return
        try:
            if not await self.store.source_in_use(source):
                await self.pictures.let_go(source)
        except Exception:
            log.warning("could not delete a member's picture no job uses (%s)", source, exc_info=True)

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
                            await stored(self.store.mark_failed, job.id, RESULT_NOT_SAVED)
                            await stored(self.store.refund, job.id, job.cost, "result not saved")
                            await self.let_go_of_pictures(job.recipe)
                            self._publish(Failed(job.id, RESULT_NOT_SAVED))
                            return
                        if result is not None:
                            self._publish(Completed(job.id, result))  # the grid is posted first...
                            if not self._closed:  # ...while each image's file is cut from it (else: on use)
                                self._write_images(result.job)
                        return
                    case Failed(message=message):
                        await stored(self.store.mark_failed, job.id, message)
                        await stored(self.store.refund, job.id, job.cost, "failed")
                        await self.let_go_of_pictures(job.recipe)
                        self._publish(event)
                        return
                    case Cancelled():
                        await stored(self.store.mark_cancelled, job.id)
                        await stored(self.store.refund, job.id, job.cost, "cancelled")
                        await self.let_go_of_pictures(job.recipe)
                        self._publish(event)
                        return
        finally:
            self._following.pop(job.id, None)

    async def _finish(self, following: _Following, finished: Finished) -> JobResult | None:
        """Write the files the worker made, then record the job done, if its attempt is still the current one."""
        job, output = following.job, finished.output
        loop = asyncio.get_running_loop()
        paths = await loop.run_in_executor(self._disk, self._results.write, job.id, output)
        recorded = await stored(
            self.store.mark_done,
            job.id,
            image_paths=[str(path) for path in paths],
            withheld=output.withheld,
            timings=dict(output.timings),
            attempt_token=output.token,
            texts=output.texts,
        )
        if not recorded:
            log.info("job %s: a result of attempt %d came after the job moved on; dropped", job.id, output.attempt)
            return None
        refunded = 0
        if output.withheld:
            refunded = refund_for_withheld(job.cost, output.count, len(output.withheld))
            await stored(self.store.refund, job.id, refunded, "withheld by the image classifier")
        recorded_job = await stored(self.job_named, job.id)
        return JobResult(recorded_job, output.grid, tuple(paths), frozenset(output.withheld), refunded)

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

    def _publish(self, event: ServiceEvent) -> None:
        following = self._following.get(event.job_id)
        own = following.listener if following is not None else None
        for listener in [own] if own is not None else list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("a listener failed on %s of job %s", type(event).__name__, event.job_id)
        self.observe(event)

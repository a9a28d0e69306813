"""The ``local`` worker client: a fair queue feeding one GPU thread in this process.

Jobs wait in a round-robin queue across users (``bot.workers.fair_queue``: each user's
jobs in order, a bound per user and in total). The worker takes the next job in that
order and fills the batch with compatible jobs (same ``BatchSpec``) from the heads of
the other users' queues, up to ``max_batch_images``. The blocking diffusers call runs in
one dedicated thread; progress comes back with ``call_soon_threadsafe``; finished
images are handed to the listener at once, as raw RGB bytes, so PNG encoding and
classification (the listener's work) overlap with the next batch on the GPU.

It implements ``bot.workers.protocol.WorkerClient``: the service uses nothing else.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.errors import QueueFull
from bot.images.grid import compose_grid
from bot.images.metadata import encode_preview
from bot.jobs.events import (
    Cancelled,
    EventListener,
    Failed,
    Finished,
    JobEvent,
    Progress,
    Queued,
    RawImage,
    Started,
)
from bot.jobs.recipe import JobKind, Recipe
from bot.runtime.tasks import log_failure
from bot.runtime.threads import background_executor
from bot.workers.fair_queue import FairQueue
from bot.workers.protocol import WorkerHealth, WorkOrder
from models.errors import GenerationInterrupted, ModelError
from models.types import BatchSpec, GenerationBatch, ImageTask, ModelPreset, Operation, StepProgress

if TYPE_CHECKING:
    from PIL import Image

    from models.engine import DiffusionEngine

log = logging.getLogger(__name__)

# A loop that crashes is restarted at most this many times within this many seconds.
MAX_RESTARTS = 3
RESTART_WINDOW_S = 60.0

OPERATIONS = {
    JobKind.IMAGINE: Operation.TXT2IMG,
    JobKind.REROLL: Operation.TXT2IMG,
    JobKind.VARIATION: Operation.VARIATION,
    JobKind.UPSCALE: Operation.UPSCALE,
}


def batch_spec(recipe: Recipe) -> BatchSpec:
    """What must be equal for jobs to share one pipeline call."""
    return BatchSpec(
        model=recipe.model,
        operation=OPERATIONS[recipe.kind],
        width=recipe.width,
        height=recipe.height,
        steps=recipe.steps,
        guidance=recipe.guidance,
        scheduler=recipe.scheduler,
        strength=recipe.strength,
    )


def image_tasks(recipe: Recipe, source: Image.Image | None) -> tuple[ImageTask, ...]:
    return tuple(
        ImageTask(prompt=recipe.prompt, negative_prompt=recipe.negative_prompt, seed=seed, init_image=source)
        for seed in recipe.seeds
    )


def decode_source(data: bytes | None) -> Image.Image | None:
    if data is None:
        return None
    from PIL import Image

    with Image.open(io.BytesIO(data)) as opened:
        return opened.convert("RGB")


@dataclass(slots=True, eq=False)
class _Entry:
    """A queued or running order with its listener and mutable bookkeeping."""

    order: WorkOrder
    spec: BatchSpec
    listener: EventListener
    queued_at: float
    cancelled: bool = False
    last_progress_at: float = field(default=float("-inf"))
    position: int = 0  # last place in the queue its listener was told

    @property
    def job_id(self) -> int:
        return self.order.job_id

    @property
    def owner(self) -> int:
        return self.order.owner

    @property
    def images(self) -> int:
        return self.order.recipe.count

    @property
    def batch_key(self) -> BatchSpec:
        return self.spec


class LocalWorker:
    """Runs jobs on the engine, one batch at a time, in one GPU thread."""

    def __init__(
        self,
        engine: DiffusionEngine,
        *,
        max_per_user: int = 5,
        max_total: int = 100,
        max_batch_images: int = 8,
        preview_interval_s: float = 1.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._queue: FairQueue[_Entry] = FairQueue(max_per_owner=max_per_user, max_total=max_total)
        self._max_batch_images = max_batch_images
        self._preview_interval_s = preview_interval_s
        self._clock = clock
        self._gpu = background_executor(1, "latentcord-gpu")
        self._wakeup = asyncio.Event()
        self._running: list[_Entry] = []
        self._runner: asyncio.Task[None] | None = None
        self._accepting = True
        self._presets: dict[str, ModelPreset] = {}
        self._restarts: list[float] = []  # when the loop was last started again after a crash

    # -- lifecycle -----------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._runner is not None and not self._runner.done()

    async def start(self) -> None:
        """Start serving the queue; calling it again while it runs does nothing. A stopped worker stays stopped."""
        if self.running:
            return
        self._launch()

    def _launch(self) -> None:
        self._runner = asyncio.create_task(self._run_forever(), name="latentcord-worker")
        self._runner.add_done_callback(log_failure("the generation worker"))
        self._runner.add_done_callback(self._restart_after_crash)

    def _restart_after_crash(self, runner: asyncio.Task[None]) -> None:
        """A loop that died of a bug is started again (the queue is intact), a few times at most.

        Past ``MAX_RESTARTS`` within ``RESTART_WINDOW_S`` it stays down, and ``check_room``
        refuses new jobs with a sentence, so nobody is charged for a job that cannot run.
        """
        if runner.cancelled() or runner.exception() is None or not self._accepting:
            return
        now = self._clock()
        self._restarts = [at for at in self._restarts if now - at < RESTART_WINDOW_S] + [now]
        if len(self._restarts) > MAX_RESTARTS:
            log.error("the generation worker keeps failing; new jobs are refused until the bot restarts")
            return
        log.warning("restarting the generation worker after a failure")
        self._launch()

    async def stop(self, *, timeout_s: float = 120.0) -> list[WorkOrder]:
        """Stop taking jobs, let the running batch finish, and hand back what never started.

        The items returned were not run; their owners' jobs stay ``queued`` in the
        store and are requeued on the next start.
        """
        self._accepting = False
        left = [entry.order for entry in self._queue.drain()]
        if self._runner is not None:
            self._wakeup.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._runner), timeout_s)
            except TimeoutError:
                log.warning("the running batch did not finish within %.0f s; interrupting it", timeout_s)
                for entry in self._running:
                    entry.cancelled = True
                self._runner.cancel()
            except Exception:  # the loop had crashed for good; that was logged when it happened
                pass
        self._gpu.shutdown(wait=False, cancel_futures=True)
        return left

    # -- the small interface the service uses ---------------------------------------

    def submit(self, order: WorkOrder, listener: EventListener) -> int:
        """Queue ``order``; return its place (1 = next). Raises ``QueueFull``."""
        if not self._accepting:
            raise QueueFull("The bot is shutting down; try again in a minute.")
        entry = _Entry(order=order, spec=batch_spec(order.recipe), listener=listener, queued_at=self._clock())
        self._queue.push(entry)
        position = self._queue.position(order.job_id) or len(self._queue)
        entry.position = position
        self._emit(entry, Queued(order.job_id, position))
        self._wakeup.set()
        return position

    def check_room(self, owner: int) -> None:
        """Raise ``QueueFull`` now if ``owner`` could not submit, before anything is charged."""
        problem = self.health().problem
        if problem is not None:
            raise QueueFull(problem)
        self._queue.check_room(owner)

    def cancel(self, job_id: int) -> bool:
        """Cancel a queued job at once, or a running one at the next step. False if unknown."""
        entry = self._queue.remove(job_id)
        if entry is None:
            entry = next((e for e in self._running if e.job_id == job_id and not e.cancelled), None)
            if entry is None:
                return False
        entry.cancelled = True
        self._emit(entry, Cancelled(job_id))
        return True

    def position(self, job_id: int) -> int | None:
        if any(entry.job_id == job_id for entry in self._running):
            return 0
        return self._queue.position(job_id)

    def pending_jobs(self, owner: int) -> list[WorkOrder]:
        running = [entry.order for entry in self._running if entry.owner == owner and not entry.cancelled]
        return running + [entry.order for entry in self._queue.pending(owner)]

    @property
    def queued_count(self) -> int:
        return len(self._queue)

    def health(self) -> WorkerHealth:
        problem = None
        if not self._accepting:
            problem = "The bot is shutting down; try again in a minute."
        elif self._runner is not None and self._runner.done():
            problem = "Image generation has stopped after repeated errors; the bot's owner has to restart it."
        return WorkerHealth(running=self.running, queued=len(self._queue), problem=problem)

    async def preset(self, model: str) -> ModelPreset:
        """The model's preset, loading it in the GPU thread the first time it is asked for."""
        preset = self._presets.get(model)
        if preset is None:
            preset = await asyncio.get_running_loop().run_in_executor(self._gpu, self._engine.load, model)
            self._presets[model] = preset
        return preset

    async def count_prompt_tokens(self, model: str, prompt: str) -> int:
        """Measured outside the GPU thread, so admission never waits for a running batch."""
        await self.preset(model)
        return await asyncio.to_thread(self._engine.count_prompt_tokens, model, prompt)

    # -- the loop ---------------------------------------------------------------------

    async def _run_forever(self) -> None:
        while self._accepting or self._queue:
            batch = self._queue.take_batch(self._max_batch_images)
            if not batch:
                if not self._accepting:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            try:
                self._announce_positions()
                await self._run_batch(batch)
            except Exception:
                # A bug outside the generation itself: the jobs in hand fail (and are refunded)
                # rather than vanish, and the loop is started again by its done-callback.
                error_id = uuid.uuid4().hex[:8]
                log.exception(
                    "the worker failed with jobs %s in hand (error id %s)", [e.job_id for e in batch], error_id
                )
                self._fail(batch, f"Generation failed unexpectedly (error id {error_id}); nothing was charged for it.")
                raise

    def _announce_positions(self) -> None:
        """Tell every waiting job whose place moved up, so users see the queue advance."""
        for position, entry in enumerate(self._queue.order(), start=1):
            if position != entry.position:
                entry.position = position
                self._emit(entry, Queued(entry.job_id, position))

    async def _run_batch(self, batch: list[_Entry]) -> None:
        loop = asyncio.get_running_loop()
        self._running = batch
        started_at = self._clock()
        for entry in batch:
            self._emit(entry, Started(entry.job_id))
        spec = batch[0].spec
        try:
            images = await loop.run_in_executor(self._gpu, self._run_blocking, spec, batch, loop)
        except GenerationInterrupted:
            pass  # every job in it was cancelled, and told so when it was
        except ModelError as error:
            self._fail(batch, str(error))
        except Exception:
            error_id = uuid.uuid4().hex[:8]
            log.exception("batch of jobs %s failed (error id %s)", [e.job_id for e in batch], error_id)
            self._fail(batch, f"Generation failed unexpectedly (error id {error_id}); nothing was charged for it.")
        else:
            generation_s = self._clock() - started_at
            offset = 0
            for entry in batch:
                count = entry.images
                if not entry.cancelled:
                    timings = {"queued_s": started_at - entry.queued_at, "generation_s": generation_s}
                    own = tuple(images[offset : offset + count])
                    self._emit(entry, Finished(entry.job_id, own, entry.order.recipe.seeds, timings))
                offset += count
        finally:
            self._running = []

    def _fail(self, batch: list[_Entry], message: str) -> None:
        for entry in batch:
            if not entry.cancelled:
                self._emit(entry, Failed(entry.job_id, message))

    def _run_blocking(self, spec: BatchSpec, entries: list[_Entry], loop: asyncio.AbstractEventLoop) -> list[RawImage]:
        """In the GPU thread: run the batch, sending throttled progress back to the loop.

        Source images are decoded here and the results turned into raw RGB bytes here, so
        the event loop never spends time on pixels.
        """
        preset = self._presets.get(spec.model) or self._engine.load(spec.model)
        self._presets.setdefault(spec.model, preset)
        tasks = tuple(
            task for entry in entries for task in image_tasks(entry.order.recipe, decode_source(entry.order.source))
        )
        spans = []
        offset = 0
        for entry in entries:
            spans.append((entry, offset, offset + entry.images))
            offset += entry.images

        def on_step(progress: StepProgress) -> None:
            now = self._clock()
            rows = range(progress.first_task, progress.first_task + _rows(progress.latents))
            for entry, start, stop in spans:
                due = now - entry.last_progress_at >= self._preview_interval_s
                if entry.cancelled or not due or start not in rows:
                    continue
                entry.last_progress_at = now
                previews = [
                    self._engine.latent_preview(progress.latents, row - progress.first_task, preset, 64)
                    for row in range(start, stop)
                    if row in rows
                ]
                preview = _tile(previews)
                # Encoded here, in the worker's thread: the event loop only forwards the bytes.
                encoded = encode_preview(preview) if preview is not None else None
                event = Progress(entry.job_id, progress.step, progress.total, encoded)
                loop.call_soon_threadsafe(self._emit, entry, event)

        def should_interrupt() -> bool:
            return all(entry.cancelled for entry in entries)

        output = self._engine.run(
            GenerationBatch(spec=spec, tasks=tasks), on_step=on_step, should_interrupt=should_interrupt
        )
        return [RawImage.from_pil(image) for image in output.images]

    def _emit(self, entry: _Entry, event: JobEvent) -> None:
        try:
            entry.listener(event)
        except Exception:
            log.exception("listener of job %s failed on %s", entry.job_id, type(event).__name__)


def _rows(latents: object) -> int:
    shape = getattr(latents, "shape", None)
    return int(shape[0]) if shape else 0


def _tile(previews: list[Image.Image]) -> Image.Image | None:
    """Lay previews out as the final grid will be (2 columns), so progress looks like the result."""
    return compose_grid(previews) if previews else None

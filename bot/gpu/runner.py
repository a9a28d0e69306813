"""A GPU worker's own loop body: run one ``Run`` on the engine and report, whatever carries the messages.

``WorkerRunner.run`` is called in the thread that owns the GPU (a thread of the bot, or the
main thread of a worker process). It decodes the jobs' input images, runs the batch, sends a
``ProgressReport`` from the step callback (a preview every ``preview_interval_s`` per job,
the first one interval in, and a heartbeat at most every ``HEARTBEAT_INTERVAL_S`` between),
then hands the batch's images to the finishing executor (``finish_batch``: classification
and the grids, beside the GPU) and returns at once, so the next batch can start while the
last one is encoded. The batch's ``Result`` is sent when its finishing is done. ``cancel``
may be called from any thread.
"""

from __future__ import annotations

import io
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from bot.gpu.finishing import RawImage, finish_batch
from bot.images.encoding import encode_preview
from bot.images.grid import compose_grid
from bot.wire import GenerationRequest, ImageRole, JobOutput, Message, ProgressReport, Ready, Result, Run, RunJob
from models.errors import GenerationInterrupted, ModelError
from models.finetunes import FineTuneUnusable
from models.operations import ComponentOperation, operation_for
from models.types import BatchSpec, GenerationBatch, ImageTask, StepProgress

if TYPE_CHECKING:
    from PIL import Image

    from models.engine import DiffusionEngine
    from models.safety import ImageClassifier
    from models.types import ModelPreset

log = logging.getLogger(__name__)

#: The edge of a progress preview's cells, in pixels.
PREVIEW_CELL_PX = 64
#: Step callbacks report at most this often when no preview is due: enough for a lost-worker check that
#: waits tens of seconds, and a GPU process that sends a message per step does work it need not do.
HEARTBEAT_INTERVAL_S = 0.5


def decoded(data: bytes | None, *, mode: str | None = None) -> Image.Image | None:
    """An input image as Pillow's, in ``mode`` if given (an edit's mask keeps its own)."""
    if data is None:
        return None
    from PIL import Image

    with Image.open(io.BytesIO(data)) as opened:
        opened.load()
        return opened.convert(mode) if mode is not None else opened.copy()


def image_tasks(request: GenerationRequest) -> tuple[ImageTask, ...]:
    """A request's images as the engine takes them: each one's prompts and seed, and the inputs they share."""
    source = decoded(request.input(ImageRole.SOURCE), mode="RGB")
    mask = decoded(request.input(ImageRole.MASK))
    references = tuple(decoded(data, mode="RGB") for data in request.inputs_of(ImageRole.REFERENCE))
    return tuple(
        ImageTask(
            prompt=image.prompt,
            negative_prompt=image.negative_prompt,
            seed=image.seed,
            init_image=source,
            mask_image=mask,
            references=tuple(image for image in references if image is not None),
        )
        for image in request.images
    )


@dataclass(slots=True, eq=False)
class _Running:
    job: RunJob
    first_row: int
    rows: int
    last_preview_at: float  # the batch's start at first: a job done within one interval needs no preview
    cancelled: bool = False


class WorkerRunner:
    """Runs batches on one engine and reports through ``send`` (thread-safe, may drop progress)."""

    def __init__(
        self,
        engine: DiffusionEngine,
        *,
        send: Callable[[Message], None],
        finishing: Executor,
        classifier: ImageClassifier | None = None,
        worker_id: str | None = None,
        max_batch_images: int = 8,
        finetunes_dir: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._send = send
        self._finishing = finishing
        # Given for a worker that finishes in threads; a side process makes its own (finishing.py).
        self._classifier = classifier
        self.worker_id = worker_id or f"worker-{uuid.uuid4().hex[:8]}"
        self.boot_id = uuid.uuid4().hex
        self._max_batch_images = max_batch_images
        self._finetunes_dir = finetunes_dir  # where this worker finds approved LoRAs and embeddings
        self._clock = clock
        self._last_heartbeat = float("-inf")  # the step callback's last report, in ``clock`` time
        self._lock = threading.Lock()
        self._running: dict[int, _Running] = {}
        self._presets: dict[str, ModelPreset] = {}  # the models it has loaded, in the order it loaded them
        self._announced: set[str] = set()  # models whose tokenizer the bot has had
        self._received = 0

    # -- what the transport calls --------------------------------------------------------

    def received(self) -> None:
        """Count a ``Run`` as it arrives (before it starts), for the next ``Ready``."""
        with self._lock:
            self._received += 1

    def ready(self, free_slots: int = 1) -> Ready:
        """What the bot needs to know to send it work; each tokenizer goes out once per boot."""
        with self._lock:
            new = [model for model in self._presets if model not in self._announced]
            self._announced.update(new)
            presets = tuple(self._presets.values())
            received = self._received
        return Ready(
            worker_id=self.worker_id,
            boot_id=self.boot_id,
            free_slots=free_slots,
            models=self._engine.resident_models(),
            max_batch_images=self._max_batch_images,
            free_vram_bytes=self._engine.free_memory_bytes(),
            load_seconds=self._engine.take_load_times(),
            received=received,
            presets=presets,
            tokenizers={model: self._engine.tokenizer_files(model) for model in new},
        )

    def load(self, models: Sequence[str]) -> None:
        """Load ``models`` in turn (the last stays resident), so the bot learns their presets and tokenizers."""
        for model in models:
            self._loaded(model)

    def _loaded(self, model: str) -> ModelPreset:
        preset = self._engine.load(model)
        with self._lock:
            self._presets.setdefault(model, preset)
        return preset

    def cancel(self, job_ids: Sequence[int]) -> None:
        with self._lock:
            for job_id in job_ids:
                running = self._running.get(job_id)
                if running is not None:
                    running.cancelled = True

    def run(self, run: Run) -> None:
        """In the GPU's thread: the batch on the engine, then its jobs off to finishing. Never raises."""
        started = self._clock()
        spec = run.jobs[0].request.spec
        rows = 0
        with self._lock:
            for job in run.jobs:
                self._running[job.request.job_id] = _Running(job, rows, job.request.count, started)
                rows += job.request.count
        try:
            raw, texts = self._generate(run, spec)
        except GenerationInterrupted:
            self._report(run, (), cancelled=self._cancelled(run))
            return
        except FineTuneUnusable as error:
            self._report(run, (), error=_named(error, run))
            return
        except ModelError as error:
            self._report(run, (), error=str(error))
            return
        except Exception:
            error_id = uuid.uuid4().hex[:8]
            log.exception("batch %s failed (error id %s)", run.batch_id, error_id)
            self._report(
                run, (), error=f"Generation failed unexpectedly (error id {error_id}); nothing was charged for it."
            )
            return
        finally:
            with self._lock:
                states = {job.request.job_id: self._running.pop(job.request.job_id, None) for job in run.jobs}
        generation_s = self._clock() - started
        cancelled = tuple(job_id for job_id, state in states.items() if state is None or state.cancelled)
        kept = [
            (job, state)
            for job in run.jobs
            if (state := states[job.request.job_id]) is not None and not state.cancelled
        ]
        if not kept:
            self._report(run, (), cancelled=cancelled)
            return
        jobs = [(job, _result_images(job, raw, texts, state)) for job, state in kept]
        written = [tuple(texts[state.first_row : state.first_row + state.rows]) for _, state in kept]
        # What the bot's metrics read of a worker, wherever it runs: its results carry the figures.
        timings = [
            {
                "queued_s": run.queued_at.get(job.request.job_id, 0.0),
                "generation_s": generation_s,
                "batch_images": float(rows),
            }
            for job, _ in jobs
        ]
        future = self._finishing.submit(
            finish_batch, jobs, run.nsfw_threshold, timings, self._classifier, written if texts else None
        )
        future.add_done_callback(lambda done: self._report_finished(run, done, cancelled))

    # -- inside ---------------------------------------------------------------------------

    def _files(self, spec: BatchSpec) -> BatchSpec:
        """The batch's fine-tunes as this worker's files (``<sha256>.safetensors`` in its FINETUNES_DIR)."""
        if not (spec.loras or spec.embeddings):
            return spec
        if self._finetunes_dir is None:
            raise ModelError("This worker has no FINETUNES_DIR, so it cannot apply LoRAs or embeddings.")

        def file(sha256: str) -> str:
            return str(self._finetunes_dir / f"{sha256}.safetensors") if self._finetunes_dir else sha256

        return replace(
            spec,
            loras=tuple((file(sha256), weight) for sha256, weight in spec.loras),
            embeddings=tuple(file(sha256) for sha256 in spec.embeddings),
        )

    def _generate(self, run: Run, spec: BatchSpec) -> tuple[list[RawImage], list[str]]:
        """The batch's images, or (a captioner's batch) its texts."""
        spec = self._files(spec)
        # A component's call loads no pipeline: its model is the component's reference.
        preset = None if isinstance(operation_for(spec.operation), ComponentOperation) else self._loaded(spec.model)
        tasks = tuple(task for job in run.jobs for task in image_tasks(job.request))

        def on_step(progress: StepProgress) -> None:
            if preset is None:  # a component's call has no steps
                return
            now = self._clock()
            batch_rows = range(progress.first_task, progress.first_task + _rows(progress.latents))
            sent = False
            with self._lock:
                due = [
                    state
                    for state in (self._running.get(job.request.job_id) for job in run.jobs)
                    if state is not None
                    and not state.cancelled
                    and state.first_row in batch_rows
                    and now - state.last_preview_at >= run.preview_interval_s
                ]
                for state in due:
                    state.last_preview_at = now
            for state in due:
                cells = [
                    self._engine.latent_preview(progress.latents, row - progress.first_task, preset, PREVIEW_CELL_PX)
                    for row in range(state.first_row, state.first_row + state.rows)
                    if row in batch_rows
                ]
                preview = encode_preview(compose_grid(cells)) if cells else None
                self._send(
                    ProgressReport(
                        self.worker_id,
                        self.boot_id,
                        run.batch_id,
                        state.job.request.job_id,
                        progress.step,
                        progress.total,
                        preview,
                    )
                )
                sent = True
            if sent:
                self._last_heartbeat = now
            elif now - self._last_heartbeat >= HEARTBEAT_INTERVAL_S:  # a heartbeat: the GPU is moving
                self._last_heartbeat = now
                self._send(ProgressReport(self.worker_id, self.boot_id, run.batch_id, None))

        def should_interrupt() -> bool:
            with self._lock:
                return all(
                    state.cancelled for state in (self._running.get(job.request.job_id) for job in run.jobs) if state
                )

        output = self._engine.run(
            GenerationBatch(spec=spec, tasks=tasks), on_step=on_step, should_interrupt=should_interrupt
        )
        return [RawImage.from_pil(image) for image in output.images], list(output.texts)

    def _cancelled(self, run: Run) -> tuple[int, ...]:
        return tuple(job.request.job_id for job in run.jobs)

    def _report_finished(self, run: Run, done: Future[list[JobOutput]], cancelled: tuple[int, ...]) -> None:
        """The batch's outputs once finishing is over, or its error sentence."""
        try:
            outputs = tuple(done.result())
        except Exception:
            error_id = uuid.uuid4().hex[:8]
            log.exception("finishing batch %s failed (error id %s)", run.batch_id, error_id)
            error = f"The images could not be saved (error id {error_id}); nothing was charged for them."
            self._report(run, (), error=error, cancelled=cancelled)
            return
        self._report(run, outputs, cancelled=cancelled)

    def _report(
        self, run: Run, outputs: tuple[JobOutput, ...], *, error: str | None = None, cancelled: tuple[int, ...] = ()
    ) -> None:
        self._send(Result(self.worker_id, self.boot_id, run.batch_id, outputs, error=error, cancelled=cancelled))


def _result_images(job: RunJob, raw: list[RawImage], texts: list[str], state: _Running) -> list[RawImage]:
    """A job's images as they came, or for a job that wrote texts (/describe), the picture it read: what its
    result shows beside them, classified like any image."""
    if not texts:
        return raw[state.first_row : state.first_row + state.rows]
    source = decoded(job.request.input(ImageRole.SOURCE), mode="RGB")
    return [RawImage.from_pil(source)] if source is not None else []


def _named(error: FineTuneUnusable, run: Run) -> str:
    """The sentence for a LoRA or embedding the batch could not apply, by the name its guild gave it."""
    for job in run.jobs:
        name = job.request.names.get(error.sha256)
        if name is not None:
            return error.sentence_for(name, job.request.spec.model)
    return str(error)


def _rows(latents: object) -> int:
    shape = getattr(latents, "shape", None)
    return int(shape[0]) if shape else 0

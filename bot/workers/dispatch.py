"""The bot's side of the workers: the fair queue, batch forming, and who runs what.

``Dispatcher`` is the ``WorkerClient`` the service calls. Jobs wait in the fair round-robin
queue (``fair_queue.py``). A batch is formed only when a worker has said it is ready
(``Ready`` with a free slot), so workers never prefetch and fairness holds however many
there are. Before a batch is sent, SQLite records the dispatch (``AttemptLedger``): each
job's attempt number goes up and it gets a fresh attempt token, in the transaction that
marks it running; a result is accepted only for the attempt it was sent with.

A worker whose heartbeat stops (``ProgressReport`` during a batch, ``Ready`` while idle),
or whose boot id changes, is lost: its jobs are put back once, at the head of their
owners' queues, for another worker if there is one; a second loss fails the job with a
sentence (the service refunds it). What a transport carries is in ``bot.wire``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from bot.errors import QueueFull
from bot.jobs.events import Cancelled, EventListener, Failed, Finished, JobEvent, Progress, Queued, Started
from bot.runtime.backoff import Backoff
from bot.runtime.tasks import TaskSet, log_failure
from bot.wire import Cancel, Message, ProgressReport, Ready, Result, Run, RunJob
from bot.workers.fair_queue import FairQueue
from bot.workers.protocol import AttemptsUnrecorded, WorkerFigures, WorkerHealth, WorkerStatus, WorkOrder
from models.errors import ModelUnavailable
from models.tokens import TokenCounter

if TYPE_CHECKING:
    from models.types import BatchSpec, ModelPreset

log = logging.getLogger(__name__)

# A dispatch loop that crashes is restarted at most this many times within this many seconds.
MAX_RESTARTS = 3
RESTART_WINDOW_S = 60.0
LOST_TWICE = "The workers running this job stopped twice, so it was given up; its credits are refunded."
STOPPED_FOR_GOOD = (
    "Image generation has stopped after repeated errors, so this job was given up; its credits are refunded."
)


@dataclass(frozen=True, slots=True)
class WorkerLost:
    """Not a wire message: what a transport says when it knows a worker is gone (a child process exited)."""

    worker_id: str
    reason: str


class Transport(Protocol):
    """How messages reach workers and come back; ``inprocess``, ``processes`` and ``streams`` implement it."""

    async def start(self, deliver: Callable[[Message | WorkerLost], None]) -> None:
        """Start; from now on ``deliver`` is called on the event loop with every message from a worker."""
        ...

    async def send(self, worker_id: str, message: Run | Cancel) -> None: ...

    async def settled(self, result: Result) -> None:
        """The bot has taken ``result``: a broker may forget it."""
        ...

    async def stop(self) -> None: ...

    async def preset(self, model: str) -> ModelPreset | None:
        """The model's preset where the transport can tell it itself (a worker in this process); else None,
        and the dispatcher waits for a worker to announce it (its own worker processes are loading it).
        A transport whose workers may never come (other hosts) raises ``ModelUnavailable`` rather than
        let anyone wait."""
        ...

    async def count_prompt_tokens(self, model: str, prompt: str) -> int | None:
        """Like ``preset`` (and asked only after it): None when the tokenizer a worker sent is to be used."""
        ...


class AttemptLedger(Protocol):
    """The dispatch records SQLite keeps (``bot.jobs.attempts`` over the store)."""

    async def start_attempts(self, job_ids: Sequence[int], worker_id: str) -> dict[int, tuple[int, str]]:
        """Mark the jobs running on ``worker_id``: their new attempt number and token; jobs gone are left out.

        Raises ``AttemptsUnrecorded`` when the storage refuses the record for now."""
        ...

    async def requeue(self, job_id: int) -> None:
        """A lost worker's job is queued again; its old attempt's result will be refused."""
        ...


@dataclass(slots=True, eq=False)
class _Entry:
    order: WorkOrder
    spec: BatchSpec
    listener: EventListener
    queued_at: float
    cancelled: bool = False
    position: int = 0  # last place in the queue its listener was told
    losses: int = 0
    avoid: str | None = None  # the worker it was lost on: prefer another
    attempt: int = 0
    token: str = ""

    @property
    def job_id(self) -> int:
        return self.order.job_id

    @property
    def owner(self) -> int:
        return self.order.owner

    @property
    def images(self) -> int:
        return self.order.count

    @property
    def batch_key(self) -> BatchSpec:
        return self.spec


@dataclass(slots=True, eq=False)
class _Worker:
    worker_id: str
    boot_id: str
    free_slots: int
    max_batch_images: int
    models: tuple[str, ...]
    last_seen: float
    batches: set[str] = field(default_factory=set)
    sent: int = 0  # Run messages sent to it since it booted
    free_vram_bytes: int | None = None


@dataclass(slots=True, eq=False)
class _Batch:
    batch_id: str
    worker_id: str
    entries: list[_Entry]
    model: str


class Dispatcher:
    """The fair queue and the workers behind it; implements ``WorkerClient``."""

    def __init__(
        self,
        transport: Transport,
        ledger: AttemptLedger,
        *,
        max_per_user: int = 5,
        max_total: int = 100,
        max_batch_images: int = 8,
        preview_interval_s: float = 1.5,
        nsfw_threshold: float = 0.7,
        heartbeat_timeout_s: float = 60.0,
        loading_timeout_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._transport = transport
        self._ledger = ledger
        self._queue: FairQueue[_Entry] = FairQueue(max_per_owner=max_per_user, max_total=max_total)
        self._max_batch_images = max_batch_images
        self._preview_interval_s = preview_interval_s
        self._nsfw_threshold = nsfw_threshold
        self._heartbeat_timeout_s = heartbeat_timeout_s
        self._loading_timeout_s = loading_timeout_s
        self._clock = clock
        self._workers: dict[str, _Worker] = {}
        self._batches: dict[str, _Batch] = {}
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._runner: asyncio.Task[None] | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._started = False
        self._accepting = True
        self._restarts: list[float] = []
        self._presets: dict[str, ModelPreset] = {}
        self._announced: dict[str, asyncio.Event] = {}  # set once a worker has told a model's preset
        self._tokenizers: dict[str, dict[str, bytes]] = {}
        self._counters: dict[str, TokenCounter] = {}
        self._tasks = TaskSet("a message to a worker")
        self._connected = 0  # workers announced, and lost, since the start: what figures() reports
        self._lost = 0
        self._loads: dict[str, tuple[int, float]] = {}  # model -> (loads, seconds in all), as workers reported

    # -- lifecycle -----------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._runner is not None and not self._runner.done()

    async def start(self) -> None:
        """Start the transport and the dispatch loop; calling it again does nothing. A stopped one stays stopped."""
        if self._started:
            return
        self._started = True
        await self._transport.start(self._receive)
        self._launch()
        self._monitor = asyncio.create_task(self._watch_heartbeats(), name="latentcord-heartbeats")
        self._monitor.add_done_callback(log_failure("the worker heartbeat monitor"))

    def _launch(self) -> None:
        self._runner = asyncio.create_task(self._dispatch_forever(), name="latentcord-dispatch")
        self._runner.add_done_callback(log_failure("the dispatcher"))
        self._runner.add_done_callback(self._restart_after_crash)

    def _restart_after_crash(self, runner: asyncio.Task[None]) -> None:
        """A loop that died of a bug is started again (the queue is intact), a few times at most.

        Past ``MAX_RESTARTS`` within ``RESTART_WINDOW_S`` it stays down, and ``check_room``
        refuses new jobs with a sentence, so nobody is charged for a job that cannot run; the jobs
        still waiting cannot go on either, and are failed with a sentence (the service refunds them).
        """
        if runner.cancelled() or runner.exception() is None or not self._accepting:
            return
        now = self._clock()
        self._restarts = [at for at in self._restarts if now - at < RESTART_WINDOW_S] + [now]
        if len(self._restarts) > MAX_RESTARTS:
            log.error("the dispatcher keeps failing; new jobs are refused until the bot restarts")
            self._fail(self._queue.drain(), STOPPED_FOR_GOOD)
            return
        log.warning("restarting the dispatcher after a failure")
        self._launch()

    async def stop(self, *, timeout_s: float = 120.0) -> list[WorkOrder]:
        """Stop taking jobs, let running batches finish, and hand back the orders that never started.

        They stay ``queued`` in SQLite and are requeued on the next start.
        """
        self._accepting = False
        left = [entry.order for entry in self._queue.drain()]
        self._wakeup.set()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            log.warning("running batches did not finish within %.0f s; interrupting them", timeout_s)
            for batch in list(self._batches.values()):
                for entry in batch.entries:
                    entry.cancelled = True
        for task in (self._runner, self._monitor):
            if task is not None:
                task.cancel()
        if self._started:
            await self._transport.stop()
        return left

    # -- what the service calls -------------------------------------------------------

    def submit(self, order: WorkOrder, listener: EventListener, *, resumed: bool = False) -> int:
        if not self._accepting:
            raise QueueFull("The bot is shutting down; try again in a minute.")
        entry = _Entry(order=order, spec=order.request.spec, listener=listener, queued_at=self._clock())
        self._queue.push(entry, bounded=not resumed)
        position = self._queue.position(order.job_id) or len(self._queue)
        entry.position = position
        self._emit(entry, Queued(order.job_id, position))
        self._wakeup.set()
        return position

    def check_room(self, owner: int) -> None:
        problem = self.health().problem
        if problem is not None:
            raise QueueFull(problem)
        self._queue.check_room(owner)

    def cancel(self, job_id: int) -> bool:
        entry = self._queue.remove(job_id)
        if entry is None:
            batch = next((b for b in self._batches.values() if any(e.job_id == job_id for e in b.entries)), None)
            entry = next((e for e in batch.entries if e.job_id == job_id), None) if batch else None
            if batch is None or entry is None or entry.cancelled:
                return False
            self._spawn(self._transport.send(batch.worker_id, Cancel((job_id,))), "a cancel")
        entry.cancelled = True
        self._emit(entry, Cancelled(job_id))
        return True

    def position(self, job_id: int) -> int | None:
        if any(e.job_id == job_id for batch in self._batches.values() for e in batch.entries):
            return 0
        return self._queue.position(job_id)

    def pending_jobs(self, owner: int) -> list[WorkOrder]:
        running = [e.order for b in self._batches.values() for e in b.entries if e.owner == owner and not e.cancelled]
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
        return WorkerHealth(running=self.running, queued=len(self._queue), workers=len(self._workers), problem=problem)

    def figures(self) -> WorkerFigures:
        queued: dict[str, int] = {}
        for entry in self._queue.order():
            queued[entry.spec.model] = queued.get(entry.spec.model, 0) + 1
        workers = tuple(
            WorkerStatus(worker.worker_id, worker.models, worker.free_vram_bytes, bool(worker.batches))
            for worker in self._workers.values()
        )
        return WorkerFigures(
            workers, connected=self._connected, lost=self._lost, queued=queued, loads=dict(self._loads)
        )

    async def preset(self, model: str) -> ModelPreset:
        """The model's preset: from the transport, or as a worker announced it (waiting for one a while)."""
        preset = self._presets.get(model)
        if preset is not None:
            return preset
        preset = await self._transport.preset(model)
        if preset is None:
            announced = self._announced.setdefault(model, asyncio.Event())
            try:
                await asyncio.wait_for(announced.wait(), self._loading_timeout_s)
            except TimeoutError:
                raise ModelUnavailable(
                    f"No worker has loaded {model} yet; check that the workers are running and serve it."
                ) from None
            return self._presets[model]
        self._presets[model] = preset
        return preset

    async def count_prompt_tokens(self, model: str, prompt: str) -> int:
        await self.preset(model)  # the model is loaded (or announced) before its tokenizer is asked for
        counted = await self._transport.count_prompt_tokens(model, prompt)
        if counted is not None:
            return counted
        counter = self._counters.get(model)
        if counter is None:
            files = self._tokenizers.get(model)
            if files is None:
                # No worker has sent its tokenizer (none online yet, say): CLIP's BPE makes at most a token
                # per byte, so this bound never counts a long prompt short, and nothing of it is cut.
                return len(prompt.encode()) + 2
            counter = self._counters[model] = await asyncio.to_thread(TokenCounter, files)
        return await asyncio.to_thread(counter.count, prompt)

    # -- the dispatch loop -------------------------------------------------------------

    async def _dispatch_forever(self) -> None:
        unrecorded = Backoff()  # dispatches in a row whose record SQLite refused (a disk I/O error, a full disk)
        while self._accepting or self._queue:
            worker = self._free_worker()
            if worker is None or not self._queue:
                if not self._accepting and not self._queue:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = self._queue.take_batch(min(self._max_batch_images, worker.max_batch_images))
            worker = self._worker_for(batch, worker)
            try:
                self._announce_positions()
                await self._dispatch(worker, batch)
            except AttemptsUnrecorded as failure:
                # The storage refused the dispatch's one transaction, so nothing changed: the jobs wait at
                # the head of the queue (_dispatch put them back) and the same dispatch is tried again soon.
                delay = unrecorded.refused()
                if unrecorded.worth_logging:
                    log.warning(
                        "could not record the dispatch of jobs %s (%s); they wait at the head of the queue, "
                        "tried again every few seconds",
                        [e.job_id for e in batch],
                        failure.__cause__,
                    )
                await asyncio.sleep(delay)
                continue
            except Exception:
                # A bug outside the generation itself: the jobs in hand fail (and are refunded)
                # rather than vanish, and the loop is started again by its done-callback.
                error_id = uuid.uuid4().hex[:8]
                log.exception("dispatching jobs %s failed (error id %s)", [e.job_id for e in batch], error_id)
                self._fail(batch, f"Generation failed unexpectedly (error id {error_id}); nothing was charged for it.")
                raise
            if refusals := unrecorded.reset():
                log.warning("dispatching again: SQLite took the dispatch after %d refusal(s)", refusals)

    def _free_worker(self) -> _Worker | None:
        free = [worker for worker in self._workers.values() if worker.free_slots > 0]
        return min(free, key=lambda worker: len(worker.batches)) if free else None

    def _worker_for(self, batch: list[_Entry], chosen: _Worker) -> _Worker:
        """Prefer a worker the batch's jobs were not lost on, when another is free; among those, one that has the
        batch's model loaded already (a load takes seconds to minutes, and frees another model)."""
        avoided = {entry.avoid for entry in batch if entry.avoid}
        free = [w for w in self._workers.values() if w.free_slots > 0 and w.worker_id not in avoided]
        if chosen.worker_id not in avoided:
            free.insert(0, chosen)
        if not free:
            return chosen
        model = batch[0].spec.model
        return next((worker for worker in free if model in worker.models), free[0])

    def _announce_positions(self) -> None:
        """Tell every waiting job whose place moved up, so users see the queue advance."""
        for position, entry in enumerate(self._queue.order(), start=1):
            if position != entry.position:
                entry.position = position
                self._emit(entry, Queued(entry.job_id, position))

    async def _dispatch(self, worker: _Worker, batch: list[_Entry]) -> None:
        """Record the batch's attempts, then send it to ``worker``.

        Raises ``AttemptsUnrecorded``, the jobs back at the head of the queue in their order, when
        SQLite did not take the record. Whatever fails, the worker's slot is free again unless the
        batch was sent.
        """
        # 1. Take one of the worker's slots, counted from now, so a Ready that arrives meanwhile does not
        #    free it again.
        worker.free_slots -= 1
        worker.sent += 1
        batch_id = uuid.uuid4().hex
        sent = False
        try:
            # 2. Record the attempts: each job's attempt number and a fresh token, in one transaction.
            live = [entry for entry in batch if not entry.cancelled]
            try:
                attempts = await self._ledger.start_attempts([entry.job_id for entry in live], worker.worker_id)
            except AttemptsUnrecorded:
                self._put_first(live)
                raise
            live = [entry for entry in live if entry.job_id in attempts and not entry.cancelled]
            if not live:
                return
            # 3. Send it.
            await self._send(worker, batch_id, live, attempts)
            sent = True
        finally:
            if not sent:
                self._give_back_slot(worker, batch_id)

    def _put_first(self, entries: list[_Entry]) -> None:
        """Jobs taken for a batch that never started: back at the head of the queue, in the order taken."""
        for entry in reversed(entries):
            if not entry.cancelled:
                self._queue.put_first(entry)
        self._announce_positions()

    def _give_back_slot(self, worker: _Worker, batch_id: str) -> None:
        """Undo a dispatch that sent nothing: the worker's slot is free again and no batch is kept for it."""
        worker.free_slots += 1
        worker.sent -= 1
        worker.batches.discard(batch_id)
        self._batches.pop(batch_id, None)
        self._settle_idle()
        self._wakeup.set()

    async def _send(
        self, worker: _Worker, batch_id: str, live: list[_Entry], attempts: dict[int, tuple[int, str]]
    ) -> None:
        now = self._clock()
        for entry in live:
            entry.attempt, entry.token = attempts[entry.job_id]
        self._batches[batch_id] = _Batch(batch_id, worker.worker_id, live, live[0].spec.model)
        worker.batches.add(batch_id)
        worker.last_seen = now
        self._idle.clear()
        run = Run(
            batch_id=batch_id,
            jobs=tuple(RunJob(entry.order.request, entry.attempt, entry.token) for entry in live),
            nsfw_threshold=self._nsfw_threshold,
            preview_interval_s=self._preview_interval_s,
            queued_at={entry.job_id: now - entry.queued_at for entry in live},
        )
        for entry in live:
            self._emit(entry, Started(entry.job_id))
        await self._transport.send(worker.worker_id, run)

    # -- what workers say -------------------------------------------------------------

    def _receive(self, message: Message | WorkerLost) -> None:
        match message:
            case Ready():
                self._on_ready(message)
            case ProgressReport():
                self._on_progress(message)
            case Result():
                self._on_result(message)
            case WorkerLost(worker_id=worker_id, reason=reason):
                self._lose(worker_id, reason)
            case _:
                log.warning("ignoring a %s from a worker", type(message).__name__)

    def _on_ready(self, ready: Ready) -> None:
        known = self._workers.get(ready.worker_id)
        if known is not None and known.boot_id != ready.boot_id:
            self._lose(ready.worker_id, "it restarted")
            known = None
        if known is None:
            log.info("worker %s is ready (models: %s)", ready.worker_id, ", ".join(ready.models) or "none yet")
            known = self._workers[ready.worker_id] = _Worker(
                ready.worker_id, ready.boot_id, 0, ready.max_batch_images, ready.models, self._clock()
            )
            self._connected += 1
        # Runs sent that it had not received when it wrote this are taken from its free slots,
        # so a heartbeat crossing a Run on the way never makes a busy worker look free.
        known.free_slots = max(0, ready.free_slots - max(0, known.sent - ready.received))
        known.models = ready.models
        known.free_vram_bytes = ready.free_vram_bytes
        for model, seconds in ready.load_seconds.items():
            loads, total = self._loads.get(model, (0, 0.0))
            self._loads[model] = (loads + 1, total + seconds)
        for preset in ready.presets:
            self._presets[preset.model] = preset  # a worker's word over what the transport told without one
            self._announced.setdefault(preset.model, asyncio.Event()).set()
        for model, files in ready.tokenizers.items():
            self._tokenizers.setdefault(model, files)
        known.max_batch_images = ready.max_batch_images
        known.last_seen = self._clock()
        self._wakeup.set()

    def _on_progress(self, report: ProgressReport) -> None:
        worker = self._workers.get(report.worker_id)
        if worker is None or worker.boot_id != report.boot_id:
            return  # a worker already declared lost: its jobs run elsewhere now
        worker.last_seen = self._clock()
        batch = self._batches.get(report.batch_id)
        if report.job_id is None or batch is None:
            return
        entry = next((e for e in batch.entries if e.job_id == report.job_id), None)
        if entry is not None and not entry.cancelled:
            self._emit(entry, Progress(entry.job_id, report.step, report.total, report.preview))

    def _on_result(self, result: Result) -> None:
        worker = self._workers.get(result.worker_id)
        if worker is not None and worker.boot_id == result.boot_id:
            worker.last_seen = self._clock()
            worker.batches.discard(result.batch_id)
        batch = self._batches.pop(result.batch_id, None)
        self._spawn(self._transport.settled(result), "settling a result")
        if batch is None:
            log.info("dropping the result of batch %s: its jobs were given to another worker", result.batch_id)
            return
        outputs = {output.job_id: output for output in result.outputs}
        for entry in batch.entries:
            if entry.cancelled:
                continue
            output = outputs.get(entry.job_id)
            if output is not None and (output.attempt, output.token) == (entry.attempt, entry.token):
                self._emit(entry, Finished(entry.job_id, output))
            else:
                message = result.error or "Generation failed unexpectedly; nothing was charged for it."
                self._emit(entry, Failed(entry.job_id, message))
        self._settle_idle()
        self._wakeup.set()

    # -- lost workers ---------------------------------------------------------------------

    async def _watch_heartbeats(self) -> None:
        while True:
            await asyncio.sleep(max(0.05, min(self._heartbeat_timeout_s / 4, 5.0)))
            now = self._clock()
            for worker in list(self._workers.values()):
                loading = any(self._batches[b].model not in worker.models for b in worker.batches if b in self._batches)
                allowance = self._loading_timeout_s if loading else self._heartbeat_timeout_s
                if now - worker.last_seen > allowance:
                    self._lose(worker.worker_id, f"no heartbeat for {now - worker.last_seen:.0f} s")

    def _lose(self, worker_id: str, reason: str) -> None:
        worker = self._workers.pop(worker_id, None)
        if worker is None:
            return
        self._lost += 1
        lost = [self._batches.pop(batch_id) for batch_id in worker.batches if batch_id in self._batches]
        log.warning("worker %s is lost (%s) with %d batch(es)", worker_id, reason, len(lost))
        for batch in lost:
            for entry in batch.entries:
                if entry.cancelled:
                    continue
                entry.losses += 1
                if entry.losses >= 2:
                    self._emit(entry, Failed(entry.job_id, LOST_TWICE))
                    continue
                entry.avoid = worker_id
                entry.queued_at = self._clock()
                self._queue.put_back(entry)
                self._spawn(self._ledger.requeue(entry.job_id), "requeueing a job")
                entry.position = self._queue.position(entry.job_id) or 1
                self._emit(entry, Queued(entry.job_id, entry.position))
        self._settle_idle()
        self._wakeup.set()

    # -- small things -------------------------------------------------------------------

    def _settle_idle(self) -> None:
        if not self._batches:
            self._idle.set()

    def _fail(self, batch: list[_Entry], message: str) -> None:
        for entry in batch:
            if not entry.cancelled:
                self._emit(entry, Failed(entry.job_id, message))

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.spawn(work, name=name)

    def _emit(self, entry: _Entry, event: JobEvent) -> None:
        try:
            entry.listener(event)
        except Exception:
            log.exception("listener of job %s failed on %s", entry.job_id, type(event).__name__)

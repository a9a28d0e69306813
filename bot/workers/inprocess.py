"""The ``inprocess`` transport: one worker in a thread of the bot's own process.

For the command line and for tests that share one loaded engine between several bots.
The worker's GPU work runs in one dedicated thread and its finishing (classification
and encoding) in two more, all below the event loop's priority; messages come back to
the loop with ``call_soon_threadsafe``. Everything else (the fair queue, attempts, lost
workers) is the dispatcher's, exactly as with workers in other processes; and every message
crosses as the protocol's bytes, as it would between hosts, so what runs here runs there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bot.gpu.runner import WorkerRunner
from bot.runtime.tasks import log_failure
from bot.runtime.threads import background_executor
from bot.wire import Cancel, Message, Result, Run, Side, decode, encode

if TYPE_CHECKING:
    from bot.workers.dispatch import WorkerLost
    from models.engine import DiffusionEngine
    from models.safety import ImageClassifier
    from models.types import ModelPreset

log = logging.getLogger(__name__)


class InProcessTransport:
    """A ``Transport`` whose one worker is a thread of this process."""

    def __init__(
        self,
        engine: DiffusionEngine,
        *,
        classifier: ImageClassifier | None,
        max_batch_images: int = 8,
        worker_id: str = "in-process",
        finetunes_dir: Path | None = None,
        heartbeat_s: float = 5.0,
    ) -> None:
        self._engine = engine
        self._classifier = classifier
        self._max_batch_images = max_batch_images
        self._worker_id = worker_id
        self._finetunes_dir = finetunes_dir
        self._gpu = background_executor(1, "latentcord-gpu")
        self._finishing = background_executor(2, "latentcord-cpu")
        self._runner: WorkerRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deliver: Callable[[Message | WorkerLost], None] | None = None
        self._running: set[asyncio.Future[None]] = set()
        self._heartbeat_s = heartbeat_s
        self._heartbeat: asyncio.Task[None] | None = None

    async def start(self, deliver: Callable[[Message | WorkerLost], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._deliver = deliver
        self._runner = WorkerRunner(
            self._engine,
            send=self._from_worker,
            finishing=self._finishing,
            classifier=self._classifier,
            worker_id=self._worker_id,
            max_batch_images=self._max_batch_images,
            finetunes_dir=self._finetunes_dir,
        )
        deliver(self._runner.ready())
        self._heartbeat = asyncio.create_task(self._beat(), name="latentcord-in-process-heartbeat")
        self._heartbeat.add_done_callback(log_failure("the in-process worker's heartbeat"))

    async def send(self, worker_id: str, message: Run | Cancel) -> None:
        runner = self._require_runner()
        received = decode(encode(message), reader=Side.WORKER)
        if isinstance(received, Cancel):
            runner.cancel(received.job_ids)
            return
        if not isinstance(received, Run):
            raise TypeError(f"a worker is sent Run and Cancel, not {type(received).__name__}")
        runner.received()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._gpu, self._run_then_ready, received)
        self._running.add(future)
        future.add_done_callback(self._running.discard)

    async def settled(self, result: Result) -> None:
        return None  # nothing is kept anywhere but in memory

    async def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self._running:
            await asyncio.wait(set(self._running))
        self._gpu.shutdown(wait=False, cancel_futures=True)
        self._finishing.shutdown(wait=True)

    async def preset(self, model: str) -> ModelPreset:
        """The model's preset, loading it in the worker's GPU thread (the dispatcher keeps it)."""
        return await asyncio.get_running_loop().run_in_executor(self._gpu, self._engine.load, model)

    async def count_prompt_tokens(self, model: str, prompt: str) -> int:
        """Measured outside the GPU thread, so admission never waits for a running batch.

        The dispatcher has had the model's preset first, so the model is loaded."""
        return await asyncio.to_thread(self._engine.count_prompt_tokens, model, prompt)

    # -- inside -----------------------------------------------------------------------

    async def _beat(self) -> None:
        """``Ready`` while idle, as a worker process's heartbeat thread sends it: without it the
        dispatcher would declare this worker lost after a quiet minute and never send it work again."""
        runner = self._require_runner()
        while True:
            await asyncio.sleep(self._heartbeat_s)
            if not self._running:
                self._from_worker(runner.ready())

    def _run_then_ready(self, run: Run) -> None:
        runner = self._require_runner()
        runner.run(run)
        self._from_worker(runner.ready())

    def _from_worker(self, message: Message) -> None:
        """Any thread: hand a worker's message to the loop."""
        loop, deliver = self._loop, self._deliver
        if loop is None or deliver is None or loop.is_closed():
            return
        message = decode(encode(message))
        try:
            loop.call_soon_threadsafe(deliver, message)
        except RuntimeError:  # the loop closed meanwhile: the bot is gone, and so is the message
            log.debug("dropped a %s: the event loop is closed", type(message).__name__)

    def _require_runner(self) -> WorkerRunner:
        if self._runner is None:
            raise RuntimeError("the in-process worker was not started")
        return self._runner

"""Building the core (store, engine, worker, service) the same way for every front end.

The Discord bot and the command line both open the core here, so ``python -m bot
imagine`` exercises exactly the code that serves Discord.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.gpu.config import engine_config
from bot.jobs.attempts import JobAttempts
from bot.jobs.recipe import Recipe
from bot.jobs.service import GenerationService
from bot.runtime.worker import worker_config
from bot.settings import Settings
from bot.workers.dispatch import Dispatcher, Transport
from bot.workers.inprocess import InProcessTransport
from bot.workers.processes import ProcessTransport, local_worker_configs
from bot.workers.streams import streams_transport
from db.store import Store

if TYPE_CHECKING:  # torch comes with the engine: imported only where generation runs in this process
    from models.engine import DiffusionEngine
    from models.safety import ImageClassifier

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Core:
    settings: Settings
    store: Store[Recipe]
    worker: Dispatcher
    service: GenerationService


@asynccontextmanager
async def open_core(
    settings: Settings,
    *,
    engine: DiffusionEngine | None = None,
    classifier: ImageClassifier | None = None,
) -> AsyncIterator[Core]:
    """Open the database (migrating it), start the workers; on exit, stop them and close the database.

    Generation runs on ``python -m bot worker`` processes on any host when ``REDIS_URL`` is set,
    else in worker child processes, one per GPU (``WORKERS=processes``, the default), or in a thread
    of this process (``WORKERS=thread``, or whenever ``engine`` is given, to share
    one loaded model between several cores in tests). ``classifier`` replaces open_nsfw; for
    worker processes it must be picklable.
    """
    store = await Store.open(settings.database_path, recipe=Recipe)
    try:
        transport: Transport
        if engine is None and settings.redis_url is not None:
            transport = streams_transport(settings)  # workers on any host, through Valkey or Redis
        elif engine is not None or settings.workers == "thread":
            from models.engine import DiffusionEngine
            from models.safety import OpenNsfwClassifier

            engine = engine or DiffusionEngine(engine_config(worker_config(settings, "in-process", classifier)))
            transport = InProcessTransport(
                engine,
                classifier=classifier if classifier is not None else OpenNsfwClassifier(),
                max_batch_images=settings.batch_max_images,
                finetunes_dir=settings.finetunes_dir,
            )
        else:
            transport = ProcessTransport(
                local_worker_configs(
                    worker_config(settings, "local", classifier), await asyncio.to_thread(local_gpus, settings)
                )
            )
        worker = dispatcher(settings, store, transport)
        await worker.start()
        service = GenerationService(settings=settings, store=store, worker=worker)
        try:
            yield Core(settings=settings, store=store, worker=worker, service=service)
        finally:
            await service.close()
    finally:
        await store.close()


#: Asked of torch in a child process, so that the bot's own process never imports it (a few hundred MB).
_COUNT_GPUS = "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)"


def local_gpus(settings: Settings) -> int:
    """How many CUDA GPUs the worker processes share out (0: one worker on the CPU)."""
    if settings.device == "cpu":
        return 0
    counted = subprocess.run([sys.executable, "-c", _COUNT_GPUS], capture_output=True, text=True, check=False)
    if counted.returncode != 0:
        log.warning("could not count the GPUs (%s); starting one worker", counted.stderr.strip()[-300:])
        return 0
    return int(counted.stdout.strip() or 0)


def dispatcher(settings: Settings, store: Store[Recipe], transport: Transport) -> Dispatcher:
    """The fair queue in front of ``transport``'s workers, with the queue's bounds from ``settings``."""
    return Dispatcher(
        transport,
        JobAttempts(store),
        max_per_user=settings.queue_max_per_user,
        max_total=settings.queue_max_total,
        max_batch_images=settings.batch_max_images,
        preview_interval_s=settings.preview_interval_s,
        nsfw_threshold=settings.nsfw_threshold,
    )

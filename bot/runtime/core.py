"""Building the core (store, engine, worker, service) the same way for every front end.

The Discord bot and the command line both open the core here, so ``python -m bot
imagine`` exercises exactly the code that serves Discord.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from bot.jobs.attempts import JobAttempts
from bot.jobs.recipe import Recipe
from bot.jobs.service import GenerationService
from bot.settings import Settings
from bot.workers.dispatch import Dispatcher, Transport
from bot.workers.inprocess import InProcessTransport
from db.store import Store
from models.engine import DiffusionEngine, EngineConfig
from models.safety import ImageClassifier, OpenNsfwClassifier

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Core:
    settings: Settings
    store: Store[Recipe]
    engine: DiffusionEngine
    worker: Dispatcher
    service: GenerationService


@asynccontextmanager
async def open_core(
    settings: Settings,
    *,
    engine: DiffusionEngine | None = None,
    classifier: ImageClassifier | None = None,
) -> AsyncIterator[Core]:
    """Open the database (migrating it), start the worker; on exit, stop it and close the database.

    ``engine`` and ``classifier`` may be given to share one loaded model between
    several cores (tests) or to use another classifier.
    """
    store = await Store.open(settings.database_path, recipe=Recipe)
    try:
        engine = engine or DiffusionEngine(
            EngineConfig(device=settings.device, cache_dir=settings.model_cache_dir, compile=settings.compile_unet)
        )
        transport = InProcessTransport(
            engine,
            classifier=classifier if classifier is not None else OpenNsfwClassifier(),
            max_batch_images=settings.batch_max_images,
        )
        worker = dispatcher(settings, store, transport)
        await worker.start()
        service = GenerationService(settings=settings, store=store, worker=worker)
        try:
            yield Core(settings=settings, store=store, engine=engine, worker=worker, service=service)
        finally:
            await service.close()
    finally:
        await store.close()


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

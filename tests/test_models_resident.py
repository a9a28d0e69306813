"""Several models per worker (MODELS_RESIDENT), and the dispatcher sending a batch where its model is loaded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from bot.jobs.events import Finished
from bot.jobs.generation import work_order
from bot.workers.dispatch import Dispatcher
from bot.workers.streams import StreamsTransport
from models.engine import DiffusionEngine, EngineConfig
from models.tiny import TINY_MODEL_ID
from models.tiny_flow import TINY_KLEIN_MODEL_ID, TINY_ZIMAGE_MODEL_ID
from models.types import BatchSpec, GenerationBatch, ImageTask, Operation
from tests.helpers import MemoryAttempts, Recorder, pixels
from tests.recipes import a_recipe
from tests.valkey_server import ThreadWorker, ValkeyServer
from tests.valkey_server import valkey as valkey_fixture

valkey = valkey_fixture  # a fresh server for each test
WAIT_S = 120.0


def image(engine: DiffusionEngine, model: str, seed: int = 1) -> np.ndarray:
    preset = engine.load(model)
    spec = BatchSpec(
        model=model,
        operation=Operation.TXT2IMG,
        width=64,
        height=64,
        steps=2,
        guidance=preset.guidance,
        scheduler=preset.scheduler,
    )
    return pixels(engine.run(GenerationBatch(spec, (ImageTask("a fox", "", seed),))).images[0])


def test_a_worker_keeps_as_many_models_as_it_may_and_frees_the_least_recently_used(model_cache_dir: Path) -> None:
    engine = DiffusionEngine(EngineConfig(device="cpu", cache_dir=model_cache_dir, models_resident=2))
    tiny = image(engine, TINY_MODEL_ID)
    image(engine, TINY_ZIMAGE_MODEL_ID)
    assert engine.resident_models() == (TINY_MODEL_ID, TINY_ZIMAGE_MODEL_ID)
    engine.load(TINY_MODEL_ID)  # used again: the most recent now
    image(engine, TINY_KLEIN_MODEL_ID)
    assert engine.resident_models() == (TINY_MODEL_ID, TINY_KLEIN_MODEL_ID)  # Z-Image was the least recent
    assert np.array_equal(image(engine, TINY_MODEL_ID), tiny)  # the same image from the model kept loaded


def test_one_resident_model_is_the_default_on_a_cpu(model_cache_dir: Path) -> None:
    engine = DiffusionEngine(EngineConfig(device="cpu", cache_dir=model_cache_dir, models_resident=0))
    engine.load(TINY_MODEL_ID)
    engine.load(TINY_ZIMAGE_MODEL_ID)
    assert engine.resident_models() == (TINY_ZIMAGE_MODEL_ID,)


async def test_a_batch_goes_to_the_free_worker_that_has_its_model_loaded(
    valkey: ValkeyServer, model_cache_dir: Path
) -> None:
    holds_tiny = DiffusionEngine(EngineConfig(device="cpu", cache_dir=model_cache_dir))
    holds_zimage = DiffusionEngine(EngineConfig(device="cpu", cache_dir=model_cache_dir))
    first = ThreadWorker(valkey.url, holds_tiny, "a").start()
    second = ThreadWorker(valkey.url, holds_zimage, "b")
    second.runner.load([TINY_ZIMAGE_MODEL_ID])  # now b holds Z-Image only (one resident model)
    second.start()
    attempts = MemoryAttempts()
    dispatcher = Dispatcher(StreamsTransport(valkey.url, block_s=0.2), attempts, preview_interval_s=0.0)
    await dispatcher.start()
    try:
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while dispatcher.health().workers < 2:
            assert asyncio.get_running_loop().time() < deadline, "both workers announced themselves"
            await asyncio.sleep(0.1)
        recipe = a_recipe(
            model=TINY_ZIMAGE_MODEL_ID,
            width=64,
            height=64,
            steps=2,
            guidance=0.0,
            seeds=(5,),
            scheduler="FlowMatchEulerDiscreteScheduler",
            negative_prompt="",
        )
        recorder = Recorder()
        dispatcher.submit(work_order(7, 1, recipe, classify=False), recorder)
        await asyncio.wait_for(recorder.done.wait(), WAIT_S)
        (finished,) = recorder.of(Finished)
        assert finished.output.token.endswith("-b")  # MemoryAttempts' tokens name the worker
        assert holds_tiny.resident_models() == (TINY_MODEL_ID,)  # a was never asked to load Z-Image
    finally:
        await dispatcher.stop(timeout_s=WAIT_S)
        first.stop()
        second.stop()

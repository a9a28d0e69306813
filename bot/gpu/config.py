"""What a GPU worker is told when it starts: picklable, so it crosses to a spawned process.

The bot makes one from its settings (``bot.runtime.worker.worker_config``) for each worker
child, for its own thread (``WORKERS=thread``) and for ``python -m bot worker``; nothing here
reads the settings, so the GPU side needs nothing of the bot's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from models.sizes import aspect_sizes

if TYPE_CHECKING:
    from models.engine import EngineConfig
    from models.safety import ImageClassifier


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """What a worker process needs; picklable, since it crosses to a spawned process."""

    worker_id: str
    device: str
    cache_dir: Path
    models: tuple[str, ...]  # loaded at start, the default last (it stays resident)
    max_batch_images: int
    compile: str = "off"  # SD_COMPILE: "auto" or "off" (models.fastpath)
    finetunes_dir: Path = Path("data/finetunes")  # FINETUNES_DIR: where approved LoRAs and embeddings are
    lora_cache: int = 8
    upscaler_tile: int = 512  # UPSCALER_TILE
    models_resident: int = 0  # MODELS_RESIDENT; 0: by the GPU's memory (models.engine.default_models_resident)
    heartbeat_s: float = 5.0
    # A picklable classifier to use instead of open_nsfw (tests); None: open_nsfw, made in the side process.
    classifier: ImageClassifier | None = None
    cuda_device: int | None = None  # the GPU this worker owns
    log_level: str = "INFO"


def engine_config(config: WorkerConfig) -> EngineConfig:
    """The engine a worker runs: its device and cache, and the fast path's buckets at every aspect preset."""
    from models.engine import EngineConfig

    return EngineConfig(
        device=config.device,
        cache_dir=config.cache_dir,
        compile=config.compile,
        max_batch_images=config.max_batch_images,
        bucket_sizes=aspect_sizes,
        lora_cache=config.lora_cache,
        models_resident=config.models_resident,
        upscaler_tile=config.upscaler_tile,
    )


def _given(classifier: ImageClassifier) -> ImageClassifier:
    return classifier


def _open_nsfw() -> ImageClassifier:
    from models.safety import OpenNsfwClassifier

    return OpenNsfwClassifier()


def classifier_factory(config: WorkerConfig) -> Callable[[], ImageClassifier]:
    if config.classifier is not None:
        return functools.partial(_given, config.classifier)
    return _open_nsfw

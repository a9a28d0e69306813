"""The bot's settings as a GPU worker's configuration, and ``python -m bot worker``'s entry point.

The GPU side (``bot.gpu``) never reads the settings: it is handed a ``WorkerConfig`` made here,
for each worker child of the bot, for the bot's own thread (``WORKERS=thread``) and for a worker
on another host. Which of the configured models the settings allow at all (``COMMERCIAL_USE`` and
each model's licence) is checked here too, by the bot and by ``python -m bot worker`` alike, before
either loads anything.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from bot.gpu.broker import BrokerUnreachable
from bot.gpu.config import WorkerConfig
from models.errors import ModelError
from models.licences import Commercial, licence_of

if TYPE_CHECKING:
    from bot.settings import Settings
    from models.safety import ImageClassifier


def worker_config(settings: Settings, worker_id: str, classifier: ImageClassifier | None = None) -> WorkerConfig:
    """What a worker is told, from the bot's settings: the models to load (the default last), the device,
    the batch bound, compiling, fine-tunes; the bot's children and ``python -m bot worker`` alike."""
    return WorkerConfig(
        worker_id=worker_id,
        device=settings.device,
        cache_dir=settings.model_cache_dir,
        models=(*reversed(settings.models),),
        max_batch_images=settings.batch_max_images,
        compile=settings.sd_compile,
        finetunes_dir=settings.finetunes_dir,
        lora_cache=settings.lora_cache,
        upscaler_tile=settings.upscaler_tile,
        models_resident=settings.models_resident,
        classifier=classifier,
        log_level=settings.log_level,
    )


def commercial_use_refusals(settings: Settings) -> list[str]:
    """With ``COMMERCIAL_USE`` on, a sentence for each configured model whose licence forbids commercial use,
    is unknown, or is one Latentcord cannot tell either way (a card's own ``license_name``); none with it off.

    Only model cards, a single file's metadata and the known releases are read (``models.licences``): no
    weight, no network, so start-up refuses before it connects to Discord or starts a worker.
    """
    if not settings.commercial_use:
        return []
    remedy = "remove it from SD_MODEL/SD_EXTRA_MODELS or set COMMERCIAL_USE=false."
    refusals = []
    for model in settings.models:
        licence = licence_of(model)
        if not licence.known:
            refusals.append(
                f"COMMERCIAL_USE is on, but the licence of {model} is unknown (no model card says it): {remedy}"
            )
        elif licence.commercial is Commercial.NO:
            refusals.append(
                f"COMMERCIAL_USE is on, but {model} is under the {licence.name}, which forbids commercial use: {remedy}"
            )
        elif licence.commercial is Commercial.UNKNOWN:
            refusals.append(
                f"COMMERCIAL_USE is on, but {model} is under {licence.name}, which Latentcord does not know to "
                f"allow commercial use: {remedy}"
            )
    return refusals


def refused_by_licence(settings: Settings) -> bool:
    """Whether start-up must stop for ``commercial_use_refusals``, each said on stderr as start-up errors are."""
    refusals = commercial_use_refusals(settings)
    for sentence in refusals:
        print(f"error: {sentence}", file=sys.stderr)
    return bool(refusals)


def worker_main(settings: Settings) -> int:
    """``python -m bot worker``: serve until SIGTERM or Ctrl-C; 2 with a sentence when it cannot start."""
    if settings.redis_url is None:
        print(
            "error: REDIS_URL is not set: a worker needs the URL of the Valkey or Redis server the bot reads "
            "(REDIS_URL=redis://host:6379/0).",
            file=sys.stderr,
        )
        return 2
    if refused_by_licence(settings):
        return 2
    from bot.gpu.stream_main import default_worker_id, serve_streams

    try:
        serve_streams(settings.redis_url, worker_config(settings, settings.worker_id or default_worker_id()))
    except (BrokerUnreachable, ModelError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0

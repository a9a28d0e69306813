"""The bot's settings as a GPU worker's configuration, and ``python -m bot worker``'s entry point.

The GPU side (``bot.gpu``) never reads the settings: it is handed a ``WorkerConfig`` made here,
for each worker child of the bot, for the bot's own thread (``WORKERS=thread``) and for a worker
on another host.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from bot.gpu.broker import BrokerUnreachable
from bot.gpu.config import WorkerConfig
from models.errors import ModelError

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
        classifier=classifier,
        log_level=settings.log_level,
    )


def worker_main(settings: Settings) -> int:
    """``python -m bot worker``: serve until SIGTERM or Ctrl-C; 2 with a sentence when it cannot start."""
    if settings.redis_url is None:
        print(
            "error: REDIS_URL is not set: a worker needs the URL of the Valkey or Redis server the bot reads "
            "(REDIS_URL=redis://host:6379/0).",
            file=sys.stderr,
        )
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

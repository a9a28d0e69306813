"""A GPU worker process: it loads the models, runs what the bot sends, and does nothing else.

``serve_pipe`` is the body of a worker child of ``python -m bot`` (the ``processes``
transport); the messages go over a multiprocessing pipe as msgpack bytes. Three threads
share the process: the main one owns the GPU and runs one ``Run`` at a time; a reader
takes messages off the pipe (a ``Cancel`` acts at once, a ``Run`` waits its turn); a
heartbeat sends ``Ready`` while the worker is idle. Classification and PNG encoding run in
a side process, so this one only launches kernels. When the bot goes away (the pipe
closes, even on kill -9) the worker finishes what it holds and exits.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.jobs.requests import aspect_sizes
from bot.workers.finishing import start_side_process
from bot.workers.protocol import Cancel, Message, ProtocolMismatch, Run, Side, decode, encode
from bot.workers.runner import WorkerRunner

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from bot.settings import Settings
    from models.engine import EngineConfig
    from models.safety import ImageClassifier

log = logging.getLogger(__name__)


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
    heartbeat_s: float = 5.0
    # A picklable classifier to use instead of open_nsfw (tests); None: open_nsfw, made in the side process.
    classifier: ImageClassifier | None = None
    cuda_device: int | None = None  # the GPU this worker owns
    log_level: str = "INFO"


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


def serve_pipe(inbox: Connection, outbox: Connection, config: WorkerConfig) -> None:
    """A worker child's whole life: load, announce, run until ``inbox`` closes; messages go out on ``outbox``."""
    if config.cuda_device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(config.cuda_device)
    from bot.__main__ import configure_logging  # the bot's own log format and noise filters
    from bot.settings import Settings

    configure_logging(Settings(log_level=config.log_level))
    from models.engine import DiffusionEngine  # after logging, so its import-time notices are filtered

    send_lock = threading.Lock()
    gone = threading.Event()

    def send(message: Message) -> None:
        data = encode(message)
        with send_lock:
            if gone.is_set():
                return
            try:
                outbox.send_bytes(data)
            except OSError:  # the bot is gone
                gone.set()

    finishing = ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=start_side_process,
        initargs=(classifier_factory(config),),
    )
    engine = DiffusionEngine(engine_config(config))
    runner = WorkerRunner(
        engine,
        send=send,
        finishing=finishing,
        worker_id=config.worker_id,
        max_batch_images=config.max_batch_images,
        finetunes_dir=config.finetunes_dir,
    )
    runner.load(config.models)
    runs: queue.Queue[Run | None] = queue.Queue()
    busy = threading.Event()

    def read() -> None:
        while True:
            try:
                message = decode(inbox.recv_bytes(), reader=Side.WORKER)
            except (EOFError, OSError):
                gone.set()
                runs.put(None)
                return
            except ProtocolMismatch as mismatch:  # nothing of it runs; this worker stops
                log.error("%s", mismatch)
                gone.set()
                runs.put(None)
                return
            if isinstance(message, Cancel):
                runner.cancel(message.job_ids)
            elif isinstance(message, Run):
                runner.received()
                runs.put(message)

    def heartbeat() -> None:
        while not gone.wait(config.heartbeat_s):
            if not busy.is_set():
                send(runner.ready(free_slots=max(0, 1 - runs.qsize())))

    threading.Thread(target=read, name="latentcord-worker-reader", daemon=True).start()
    threading.Thread(target=heartbeat, name="latentcord-worker-heartbeat", daemon=True).start()
    send(runner.ready(free_slots=1))
    log.info("ready with %s", ", ".join(config.models))
    try:
        while (run := runs.get()) is not None:
            busy.set()
            runner.run(run)
            busy.clear()
            send(runner.ready(free_slots=max(0, 1 - runs.qsize())))
    finally:
        # The bot closed the inbox to stop this worker, or is gone: results already being
        # encoded are finished and sent if the outbox still takes them; nothing new starts.
        finishing.shutdown(wait=True, cancel_futures=True)
        gone.set()
        outbox.close()

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

import logging
import multiprocessing
import os
import queue
import threading
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING

from bot.gpu.config import WorkerConfig, classifier_factory, engine_config
from bot.gpu.finishing import exit_without_native_teardown, start_side_process
from bot.gpu.runner import WorkerRunner
from bot.logs import configure_logging
from bot.wire import Cancel, Message, ProtocolMismatch, Run, Side, decode, encode

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

log = logging.getLogger(__name__)


def serve_pipe(inbox: Connection, outbox: Connection, config: WorkerConfig) -> None:
    """A worker child's whole life: load, announce, run until ``inbox`` closes; messages go out on ``outbox``.

    Its process ends without the native libraries' teardown (``exit_without_native_teardown``), with the exit code
    Python would have given it.
    """
    try:
        _serve(inbox, outbox, config)
    except BaseException:
        log.exception("the worker stopped on an error")
        exit_without_native_teardown(1)
    exit_without_native_teardown(0)


def _serve(inbox: Connection, outbox: Connection, config: WorkerConfig) -> None:
    if config.cuda_device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(config.cuda_device)
    configure_logging(config.log_level)
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

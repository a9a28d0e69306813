"""``python -m bot worker``: a GPU worker on any host, reached through the Valkey or Redis server at ``REDIS_URL``.

It loads the configured models (the default last, so it stays resident), announces itself
and serves whichever bot reads the same server; ``bot.workers.streams`` describes the keys. Four
threads share the process, as in ``pipe_main``'s pipe worker: the main one owns the GPU
and runs one ``Run`` at a time; a reader takes the worker's inbox (XREAD BLOCK, a second at
a time): a ``Cancel`` acts at once, a ``Run`` waits its turn; a heartbeat sends ``Ready``
while the worker is idle; a sender writes ``Ready`` and ``Result`` to the results stream,
retrying while the server cannot be reached (a result is kept as long as the worker lives),
and publishes ``ProgressReport`` (dropped while it cannot). Every retry waits a time drawn
from this worker's own random numbers (``broker.Outage``), so the workers of a restarted
server come back spread out. Classification and PNG encoding run in a side process. SIGTERM
or Ctrl-C: the worker stops reading, announces that it has no free slot, runs what it had
received, sends the results and exits; a second Ctrl-C quits at once. The bot may come and
go meanwhile: the worker waits for the next one; and a bot started first takes jobs that
wait for the first worker.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import random
import re
import signal
import socket
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from types import FrameType
from typing import TYPE_CHECKING

import redis
from redis.typing import EncodableT, FieldT, KeyT, StreamIdT

from bot.gpu.broker import (
    BOOT_FIELD,
    FAILED,
    MESSAGE_FIELD,
    UNREACHABLE,
    BrokerUnreachable,
    Entry,
    Outage,
    StreamKeys,
    entry_ms,
    redacted,
    stream_entries,
    unreachable,
)
from bot.gpu.config import WorkerConfig, classifier_factory, engine_config
from bot.gpu.finishing import start_side_process
from bot.gpu.runner import WorkerRunner
from bot.wire import Cancel, Message, ProgressReport, ProtocolMismatch, Result, Run, Side, decode, encode

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

#: What the users of a batch read when it reached its worker too late to be run.
STALE_RUN = "The worker got this job too late to run it, so it was given up; its credits are refunded."
#: Progress reports waiting to be sent beyond this many are dropped (the server is slow or away).
MAX_QUEUED_PROGRESS = 32


def default_worker_id() -> str:
    """The host's name and this process's id, in the characters a worker id may hold."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", f"{socket.gethostname()}-{os.getpid()}")[-64:]


def serve_streams(redis_url: str, config: WorkerConfig) -> None:
    """A worker's whole life: reach the server, load the models, serve until stopped."""
    if config.cuda_device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(config.cuda_device)
    from models.engine import DiffusionEngine

    worker = StreamWorker(redis_url, heartbeat_s=config.heartbeat_s)
    try:
        worker.wait_for_server()
        finishing = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=start_side_process,
            initargs=(classifier_factory(config),),
        )
        try:
            engine = DiffusionEngine(engine_config(config))
            runner = WorkerRunner(
                engine,
                send=worker.send,
                finishing=finishing,
                worker_id=config.worker_id,
                max_batch_images=config.max_batch_images,
                finetunes_dir=config.finetunes_dir,
            )
            _stop_on_signals(worker)
            log.info("worker %s: loading %s", config.worker_id, ", ".join(config.models))
            runner.load(config.models)
        except BaseException:
            finishing.shutdown(wait=False, cancel_futures=True)
            raise
        worker.serve(runner, finishing)
    finally:
        worker.close()


def _stop_on_signals(worker: StreamWorker) -> None:
    """The first SIGTERM or Ctrl-C stops the worker gently; the next one acts as if none were handled."""

    def handle(signum: int, frame: FrameType | None) -> None:
        log.info("stopping after the work in hand (again to quit at once)")
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        # Not here: a handler runs between two bytecodes of the main thread, which may hold a lock stop() takes.
        threading.Thread(target=worker.stop, name="latentcord-stop", daemon=True).start()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)


class StreamWorker:
    """The threads around one ``WorkerRunner`` that carry its messages through the server.

    ``send`` is the runner's ``send``; ``serve`` blocks in the GPU's thread until ``stop``.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        keys: StreamKeys | None = None,
        heartbeat_s: float = 5.0,
        stale_after_s: float = 60.0,
        block_s: float = 1.0,
        flush_timeout_s: float = 60.0,
        connect_timeout_s: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self._url = redis_url
        self._rng = rng if rng is not None else random.Random()  # seeded from the OS: each worker its own waits
        try:
            self._client = redis.Redis.from_url(
                redis_url,
                protocol=2,  # the replies stream_entries reads
                socket_connect_timeout=5.0,
                socket_timeout=block_s + 10.0,
                health_check_interval=30,
            )
        except ValueError as error:
            raise BrokerUnreachable(f"REDIS_URL is not a URL of a Valkey or Redis server ({error}).") from None
        self._keys = keys or StreamKeys()
        self._heartbeat_s = heartbeat_s
        self._stale_after_ms = int(stale_after_s * 1000)
        self._block_ms = max(1, int(block_s * 1000))
        self._flush_timeout_s = flush_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._outbound: queue.Queue[Message | None] = queue.Queue()
        self._runs: queue.Queue[Run | None] = queue.Queue()
        self._stopping = threading.Event()  # stop reading; finish what was received
        self._abandon = threading.Event()  # stop retrying what the server will not take
        self._busy = threading.Event()

    # -- what the runner and the owner call --------------------------------------------------

    def send(self, message: Message) -> None:
        """Any thread: queue a message for the sender (a progress report may be dropped)."""
        if isinstance(message, ProgressReport) and self._outbound.qsize() >= MAX_QUEUED_PROGRESS:
            return
        self._outbound.put(message)

    def wait_for_server(self) -> None:
        """Return once the server answers; ``BrokerUnreachable`` after ``connect_timeout_s``, or when it refuses."""
        deadline = time.monotonic() + self._connect_timeout_s
        outage = self.backoff("reaching the server")
        while True:
            try:
                self._client.ping()
                outage.over()
                return
            except FAILED as error:
                left = deadline - time.monotonic()
                if left <= 0 or not isinstance(error, UNREACHABLE):
                    raise BrokerUnreachable(unreachable(self._url, error)) from None
                time.sleep(min(outage.failed(error), left))

    def backoff(self, what: str) -> Outage:
        """The waits between tries while the server cannot be reached, from this worker's own random numbers."""
        return Outage(what, self._rng)

    def stop(self) -> None:
        """Any thread: stop reading the inbox; ``serve`` returns once what was received is done and sent."""
        self._stopping.set()

    def serve(self, runner: WorkerRunner, finishing: Executor) -> None:
        """In the GPU's thread: announce, run each Run in turn, and on ``stop`` finish and flush; shuts ``finishing``."""
        inbox = self._keys.inbox(runner.worker_id)
        try:
            self._client.delete(inbox)  # what it holds was meant for an earlier life of this worker
        except UNREACHABLE as error:
            log.warning("could not clear the inbox: %s", error)
        sender = threading.Thread(target=self._send_forever, name="latentcord-worker-sender", daemon=True)
        reader = threading.Thread(target=self._read, args=(runner, inbox), name="latentcord-worker-reader", daemon=True)
        heartbeat = threading.Thread(
            target=self._heartbeat, args=(runner,), name="latentcord-worker-heartbeat", daemon=True
        )
        sender.start()
        self.send(runner.ready(free_slots=1))
        reader.start()
        heartbeat.start()
        log.info("worker %s is ready on %s", runner.worker_id, redacted(self._url))
        try:
            while (run := self._runs.get()) is not None:
                self._busy.set()
                try:
                    runner.run(run)
                finally:
                    self._busy.clear()
                if not self._stopping.is_set():
                    self.send(runner.ready(free_slots=max(0, 1 - self._runs.qsize())))
        finally:
            self._stopping.set()
            # Results still being encoded are finished and sent; nothing new starts.
            finishing.shutdown(wait=True)
            heartbeat.join(self._heartbeat_s + 1.0)
            self._outbound.put(None)
            sender.join(self._flush_timeout_s)
            if sender.is_alive():
                log.error("the server did not take the last messages within %.0f s", self._flush_timeout_s)
                self._abandon.set()
                sender.join(5.0)
            reader.join(self._block_ms / 1000 + 5.0)
            try:
                self._client.delete(inbox)
            except UNREACHABLE as error:
                log.warning("could not delete the inbox: %s", error)
            log.info("worker %s stopped", runner.worker_id)

    def close(self) -> None:
        self._abandon.set()
        self._client.close()

    # -- the threads ---------------------------------------------------------------------------

    def _read(self, runner: WorkerRunner, inbox: str) -> None:
        """The inbox, in order: Cancel at once, Run to the GPU's queue; ends (and ends ``serve``) on ``stop``."""
        outage = self.backoff("reading the inbox")
        streams: dict[KeyT, StreamIdT] = {inbox: "0-0"}
        try:
            while not self._stopping.is_set():
                try:
                    entries = stream_entries(self._client.xread(streams, count=16, block=self._block_ms))
                    outage.over()
                except FAILED as error:
                    self._stopping.wait(outage.failed(error))
                    continue
                if not entries:
                    continue
                streams[inbox] = entries[-1][0]
                now_ms = entry_ms(entries[-1][0])  # should the server not tell its time: as if just written
                try:
                    self._client.xdel(inbox, *(entry_id for entry_id, _ in entries))
                    seconds, micros = self._client.time()
                    now_ms = seconds * 1000 + micros // 1000
                except FAILED as error:
                    log.warning("could not delete what was read from the inbox: %s", error)
                for entry in entries:
                    self._take(runner, entry, now_ms)
        except Exception:
            log.exception("the inbox reader failed; the worker stops")
        finally:
            self._stopping.set()
            self._runs.put(None)

    def _take(self, runner: WorkerRunner, entry: Entry, now_ms: int) -> None:
        entry_id, fields = entry
        data = fields.get(MESSAGE_FIELD) if fields else None
        if fields is None or data is None:
            return
        boot = fields.get(BOOT_FIELD, b"").decode()
        if boot and boot != runner.boot_id:
            log.info("dropping a message the bot sent to an earlier run of this worker")
            return
        try:
            message = decode(data, reader=Side.WORKER)
        except ProtocolMismatch as mismatch:  # nothing of it runs; a bot of this worker's version may come
            log.error("%s", mismatch)
            return
        if isinstance(message, Cancel):
            runner.cancel(message.job_ids)
        elif isinstance(message, Run):
            runner.received()
            waited_ms = now_ms - entry_ms(entry_id)
            if waited_ms > self._stale_after_ms:
                # The bot has likely given these jobs to another worker by now; answering keeps it from waiting.
                log.warning("batch %s waited %.0f s in the inbox; not running it", message.batch_id, waited_ms / 1000)
                self.send(Result(runner.worker_id, runner.boot_id, message.batch_id, (), error=STALE_RUN))
            else:
                self._runs.put(message)

    def _heartbeat(self, runner: WorkerRunner) -> None:
        while not self._stopping.wait(self._heartbeat_s):
            # Not while a message waits: a server away would otherwise find a pile of heartbeats on its return.
            if not self._busy.is_set() and self._outbound.empty():
                self.send(runner.ready(free_slots=max(0, 1 - self._runs.qsize())))
        self.send(runner.ready(free_slots=0))  # stopping: no more work, please

    def _send_forever(self) -> None:
        outage = self.backoff("sending to the server")
        while (message := self._outbound.get()) is not None:
            data = encode(message)
            if isinstance(message, ProgressReport):
                try:
                    self._client.publish(self._keys.progress, data)
                except FAILED:
                    pass  # progress is lossy; the next report will do
                continue
            fields: dict[FieldT, EncodableT] = {MESSAGE_FIELD: data}
            while True:
                try:
                    self._client.xadd(self._keys.results, fields)
                    outage.over()
                    break
                except FAILED as error:  # away, or full (noeviction): keep it and try again
                    if self._abandon.is_set():
                        log.error("dropping a %s: the server does not take it (%s)", type(message).__name__, error)
                        break
                    self._abandon.wait(outage.failed(error))

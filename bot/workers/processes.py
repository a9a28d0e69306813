"""The ``processes`` transport, the default: one worker child process per local GPU (one on a CPU).

The bot spawns each child (``bot.gpu.pipe_main.serve_pipe``) with two one-way pipes, its inbox
and its outbox; messages cross them as msgpack bytes. A thread per child reads its outbox
and hands each message to the event loop; when a child exits (a crash, an out-of-memory
kill, kill -9) the read ends, and the dispatcher hears ``WorkerLost`` at once, without
waiting for the heartbeat. No server is needed. Closing its inbox stops a child; so does
the bot's own death, since the child reads end of file then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from bot.gpu.config import WorkerConfig
from bot.gpu.pipe_main import serve_pipe
from bot.runtime.tasks import TaskSet
from bot.wire import (
    Cancel,
    Message,
    ProtocolMismatch,
    Result,
    Run,
    VersionMismatch,
    decode,
    encode,
    refusal_notice,
)
from bot.workers.dispatch import WorkerLost

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from models.types import ModelPreset

log = logging.getLogger(__name__)

#: How long a stopping worker may take to finish its batch before it is terminated.
STOP_GRACE_S = 60.0
#: A worker process that dies is started again, at most this many times within this many seconds.
MAX_RESPAWNS = 5
RESPAWN_WINDOW_S = 60.0


@dataclass(slots=True, eq=False)
class _Child:
    config: WorkerConfig
    process: BaseProcess
    inbox: Connection  # our sending end of the child's inbox
    outbox: Connection  # our reading end of the child's outbox
    send_lock: asyncio.Lock


class ProcessTransport:
    """A ``Transport`` over worker child processes of this one."""

    def __init__(self, configs: list[WorkerConfig]) -> None:
        self._configs = configs
        self._children: dict[str, _Child] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deliver: Callable[[Message | WorkerLost], None] | None = None
        self._stopping = False
        self._respawns: dict[str, list[float]] = {}
        self._tasks = TaskSet("starting a worker process")

    async def start(self, deliver: Callable[[Message | WorkerLost], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._deliver = deliver
        for config in self._configs:
            await self._spawn(config)

    async def _spawn(self, config: WorkerConfig) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a process that holds threads and CUDA
        their_inbox, our_inbox = context.Pipe(duplex=False)
        our_outbox, their_outbox = context.Pipe(duplex=False)
        process = context.Process(
            target=serve_pipe,
            args=(their_inbox, their_outbox, config),
            name=f"latentcord-{config.worker_id}",
            daemon=False,
        )
        await asyncio.to_thread(process.start)
        # The child holds its ends; ours must not keep them open, or its death would go unseen.
        their_inbox.close()
        their_outbox.close()
        child = _Child(config, process, our_inbox, our_outbox, asyncio.Lock())
        self._children[config.worker_id] = child
        threading.Thread(
            target=self._read, args=(child,), name=f"latentcord-read-{config.worker_id}", daemon=True
        ).start()
        log.info("started worker %s (pid %s)", config.worker_id, process.pid)

    def _respawn(self, config: WorkerConfig) -> None:
        """On the loop: start a worker again after its process died, a few times a minute at most."""
        if self._stopping:
            return
        now = time.monotonic()
        recent = [at for at in self._respawns.get(config.worker_id, []) if now - at < RESPAWN_WINDOW_S]
        if len(recent) >= MAX_RESPAWNS:
            log.error("worker %s keeps dying; not starting it again until the bot restarts", config.worker_id)
            return
        self._respawns[config.worker_id] = [*recent, now]
        self._tasks.spawn(self._spawn(config), name=f"respawn-{config.worker_id}")

    async def send(self, worker_id: str, message: Run | Cancel) -> None:
        child = self._children.get(worker_id)
        if child is None:
            return  # lost meanwhile: the dispatcher has already put its jobs back
        data = encode(message)
        async with child.send_lock:
            try:
                await asyncio.to_thread(child.inbox.send_bytes, data)
            except OSError as error:
                self._lost(child, f"its pipe broke ({error})")

    def pids(self) -> dict[str, int | None]:
        """The process id of each worker now, by worker id (for operators' tools and tests)."""
        return {worker_id: child.process.pid for worker_id, child in self._children.items()}

    async def settled(self, result: Result) -> None:
        return None  # a pipe keeps nothing

    async def stop(self) -> None:
        self._stopping = True
        for child in self._children.values():
            child.inbox.close()  # the child finishes what it holds, then exits
        self._tasks.cancel()
        for child in list(self._children.values()):
            # join can return as the child exits, before the OS reports it gone: look again until the grace ends.
            deadline = time.monotonic() + STOP_GRACE_S
            while child.process.is_alive() and (left := deadline - time.monotonic()) > 0:
                await asyncio.to_thread(child.process.join, left)
                if child.process.is_alive():
                    await asyncio.sleep(0.02)
            if child.process.is_alive():
                log.warning("worker %s did not stop in %.0f s; terminating it", child.config.worker_id, STOP_GRACE_S)
                child.process.terminate()
                await asyncio.to_thread(child.process.join, 10)
        self._children.clear()

    async def preset(self, model: str) -> ModelPreset | None:
        return None  # the workers announce their models' presets in Ready

    async def count_prompt_tokens(self, model: str, prompt: str) -> int | None:
        return None  # counted with the tokenizer a worker sent

    # -- inside -----------------------------------------------------------------------

    def _read(self, child: _Child) -> None:
        """A thread per child: its messages to the loop, then ``WorkerLost`` when it is gone.

        A message it cannot read ends the child: the sentence goes to the log, and a child on another
        protocol version is told (it logs why and exits) and not started again, which would not help.
        """
        reason = "its process exited"
        refused = False
        while True:
            try:
                message = decode(child.outbox.recv_bytes())
            except (EOFError, OSError):
                break
            except ProtocolMismatch as mismatch:
                log.error("%s", mismatch)
                reason = str(mismatch)
                refused = isinstance(mismatch, VersionMismatch)
                if refused:
                    with contextlib.suppress(OSError):  # nothing else writes to a child whose Ready was refused
                        child.inbox.send_bytes(refusal_notice())
                break
            self._to_loop(message)
        child.outbox.close()
        child.process.join(1)
        if child.process.exitcode is not None:
            reason = f"its process exited with code {child.process.exitcode}"
        if refused:
            child.inbox.close()  # a child of any version exits at the end of its inbox
        if not self._stopping:
            self._to_loop(WorkerLost(child.config.worker_id, reason))
            loop = self._loop
            if loop is not None and not loop.is_closed() and not refused:
                try:
                    loop.call_soon_threadsafe(self._respawn, child.config)
                except RuntimeError:  # the loop closed meanwhile
                    pass

    def _lost(self, child: _Child, reason: str) -> None:
        if self._deliver is not None and not self._stopping:
            self._deliver(WorkerLost(child.config.worker_id, reason))

    def _to_loop(self, message: Message | WorkerLost) -> None:
        loop, deliver = self._loop, self._deliver
        if loop is None or deliver is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(deliver, message)
        except RuntimeError:  # the loop closed meanwhile
            pass


def local_worker_configs(template: WorkerConfig, gpus: int) -> list[WorkerConfig]:
    """One worker per GPU (``local-0`` on the first ...), or one on the CPU when there is none."""
    if gpus <= 0:
        return [replace(template, worker_id="local-0", cuda_device=None)]
    return [replace(template, worker_id=f"local-{index}", cuda_device=index) for index in range(gpus)]

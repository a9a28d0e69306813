"""The seam between the service and the GPU workers, on the bot's side: the client the service calls.

The service admits and records jobs, compiles each into a ``GenerationRequest``
(``bot.jobs.generation``) and calls a ``WorkerClient`` (``bot.workers.dispatch``'s
``Dispatcher``): it keeps the fair queue, forms batches and hands each to a worker that has
said it is ready. Workers run where a transport puts them: a thread of this process
(``inprocess``), child processes (``processes``, the default), or any host through Valkey or
Redis Streams (``streams``). What they speak is in ``bot.wire``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from bot.jobs.events import EventListener
    from bot.jobs.recipe import Recipe
    from bot.wire import GenerationRequest
    from models.types import ModelPreset


class AttemptsUnrecorded(Exception):
    """The dispatch ledger's storage refused a dispatch's record for now (a disk I/O error, a full disk; the
    cause says which); nothing changed, so the dispatch is tried again. Any other error of the ledger is a bug."""


@dataclass(frozen=True, slots=True, eq=False)
class WorkOrder:
    """One job in the bot's queue: for whom (``owner``, the fairness key: the user who is charged), its
    recipe as admitted, and the request a worker runs (``bot.jobs.generation.work_order`` makes one)."""

    job_id: int
    owner: int
    recipe: Recipe
    request: GenerationRequest

    @property
    def count(self) -> int:
        return self.request.count


@dataclass(frozen=True, slots=True)
class WorkerHealth:
    """Whether the client can take jobs now, and why not when it cannot."""

    running: bool
    queued: int
    workers: int = 0  # workers ready or busy now
    problem: str | None = None  # one sentence for the user when it cannot take jobs


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """One connected worker as its latest heartbeat (``Ready``) told it."""

    worker_id: str
    models: tuple[str, ...]  # loaded now
    free_vram_bytes: int | None  # None: it did not say (a CPU worker)
    busy: bool


@dataclass(frozen=True, slots=True)
class WorkerFigures:
    """What the workers reported through the bot, for metrics and health: no second scrape target per worker."""

    workers: tuple[WorkerStatus, ...] = ()
    connected: int = 0  # workers that announced themselves since the bot started (a restarted worker again)
    lost: int = 0  # workers declared lost (no heartbeat, a new boot, a closed pipe)
    queued: Mapping[str, int] = field(default_factory=dict)  # jobs waiting, by model
    # Model loads the workers reported, by model: how many, and their seconds in all.
    loads: Mapping[str, tuple[int, float]] = field(default_factory=dict)


class WorkerClient(Protocol):
    """What the service needs from whatever runs its jobs."""

    async def start(self) -> None: ...

    async def stop(self, *, timeout_s: float = 120.0) -> list[WorkOrder]:
        """Stop taking jobs, let running ones finish, and hand back the orders that never started."""
        ...

    def submit(self, order: WorkOrder, listener: EventListener, *, resumed: bool = False) -> int:
        """Queue ``order``; return its place (1 = next). Raises ``QueueFull``, except for a job
        admitted before a restart (``resumed``): the queue's bounds never strand one of those."""
        ...

    def check_room(self, owner: int) -> None:
        """Raise ``QueueFull`` now if ``owner`` could not submit, before anything is charged."""
        ...

    def cancel(self, job_id: int) -> bool:
        """Cancel a queued job at once, or a running one at its next step. False if unknown or done."""
        ...

    def position(self, job_id: int) -> int | None:
        """0 while running, 1 when next, ``None`` when unknown."""
        ...

    def pending_jobs(self, owner: int) -> list[WorkOrder]: ...

    @property
    def queued_count(self) -> int: ...

    @property
    def running(self) -> bool: ...

    def health(self) -> WorkerHealth: ...

    def figures(self) -> WorkerFigures:
        """The workers' latest reports and the queue by model, read when metrics are scraped."""
        ...

    async def preset(self, model: str) -> ModelPreset:
        """The model's defaults and limits; no model needs to be loaded in this process."""
        ...

    async def count_prompt_tokens(self, model: str, prompt: str) -> int: ...

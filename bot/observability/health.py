"""Whether the bot can serve members now: what ``GET /healthz`` answers, and a container's health check reads.

Healthy means all three: the Discord gateway is connected, SQLite answers a query within a few seconds,
and at least one worker is ready or starting. "Starting" is the time before any worker has announced
itself (a local worker loading its model, workers on other hosts not up yet), up to ``starting_grace_s``;
once workers have come, none connected (all lost, or the dispatcher stopped) is unhealthy until one is back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.workers.protocol import WorkerClient

#: How long SQLite may take to answer before the bot is called unhealthy.
STORE_TIMEOUT_S = 5.0
#: How long the first worker may take to announce itself (a first start downloads and loads a model).
STARTING_GRACE_S = 900.0


@dataclass(frozen=True, slots=True)
class HealthVerdict:
    problems: tuple[str, ...]  # one sentence each; none: healthy

    @property
    def healthy(self) -> bool:
        return not self.problems


class HealthCheck:
    """The three conditions, each asked of its owner: the Bot (gateway), the store, the worker client."""

    def __init__(
        self,
        *,
        gateway_connected: Callable[[], bool],
        store_answers: Callable[[], Awaitable[object]],
        worker: WorkerClient,
        starting_grace_s: float = STARTING_GRACE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._gateway_connected = gateway_connected
        self._store_answers = store_answers
        self._worker = worker
        self._clock = clock
        self._starting_until = clock() + starting_grace_s

    async def verdict(self) -> HealthVerdict:
        problems: list[str] = []
        if not self._gateway_connected():
            problems.append("The Discord gateway is not connected.")
        try:
            await asyncio.wait_for(self._store_answers(), STORE_TIMEOUT_S)
        except Exception as error:  # any failure to answer is the finding, not a crash of the check
            problems.append(f"SQLite did not answer ({type(error).__name__}: {error}).")
        if (worker_problem := self._worker_problem()) is not None:
            problems.append(worker_problem)
        return HealthVerdict(tuple(problems))

    def _worker_problem(self) -> str | None:
        health = self._worker.health()
        if not health.running:
            return health.problem or "The dispatcher is not running."
        figures = self._worker.figures()
        if figures.workers:
            return None
        if figures.connected == 0 and self._clock() < self._starting_until:
            return None  # starting: none has announced itself yet
        return "No worker is ready or starting."

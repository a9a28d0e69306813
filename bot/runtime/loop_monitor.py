"""How late the event loop runs: the delay every interaction and heartbeat waits behind.

A timer that should fire every ``interval_s`` is measured against the loop's clock;
how late it fires is the time something held the loop (a blocking call, a long
garbage-collection pass, or the loop's thread waiting for a CPU or the GIL). The bot
keeps the recent samples for operators and benchmarks, and logs once when a single
delay is long enough to endanger Discord's 3-second window.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LagFigures:
    samples: int
    p50_s: float
    p99_s: float
    max_s: float


class LoopLagMonitor:
    def __init__(self, *, interval_s: float = 0.02, keep: int = 60_000, warn_s: float = 1.0) -> None:
        self._interval_s = interval_s
        self._samples: deque[float] = deque(maxlen=keep)
        self._warn_s = warn_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._measure_forever(), name="latentcord-loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def reset(self) -> None:
        self._samples.clear()

    def figures(self) -> LagFigures:
        ordered = sorted(self._samples)
        if not ordered:
            return LagFigures(0, 0.0, 0.0, 0.0)

        def at(fraction: float) -> float:
            return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]

        return LagFigures(len(ordered), at(0.5), at(0.99), ordered[-1])

    async def _measure_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            planned = loop.time() + self._interval_s
            await asyncio.sleep(self._interval_s)
            lag = max(0.0, loop.time() - planned)
            self._samples.append(lag)
            if lag >= self._warn_s:
                log.warning("the event loop was held for %.1f s; interactions and heartbeats waited", lag)

"""Small test doubles and builders shared by several test modules (and, for the settings, the benchmarks)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from bot.images.grid import grid_cells
from bot.jobs.events import Cancelled, Failed, Finished, JobEvent
from bot.jobs.service import Completed, ServiceEvent
from bot.settings import Settings
from models.tiny import TINY_MODEL_ID

if TYPE_CHECKING:
    from bot.runtime.core import Core
    from bot.wire import JobOutput
    from tests.fakediscord.models import StoredMessage

T0 = 1_700_000_000.0


class FakeClock:
    """A clock the test moves by hand, so windows expire without sleeping."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class NoNsfw:
    """The NSFW classifier's interface; flags the given image positions (none by default) and counts its calls.

    The real classifier's scores on the tiny model's noise images are arbitrary, so tests that
    are not about the classifier use this one.
    """

    def __init__(self, flagged: Sequence[int] = ()) -> None:
        self.flagged = set(flagged)
        self.calls = 0

    def nsfw_scores(self, images: Sequence[Image.Image]) -> list[float]:
        self.calls += 1
        return [0.99 if index in self.flagged else 0.01 for index in range(len(images))]


class Recorder:
    """A job's listener for tests of the workers: its events, and ``done`` once it finished, failed or was cancelled."""

    def __init__(self) -> None:
        self.events: list[JobEvent] = []
        self.done = asyncio.Event()

    def __call__(self, event: JobEvent) -> None:
        self.events.append(event)
        if isinstance(event, Finished | Failed | Cancelled):
            self.done.set()

    def of(self, kind: type) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]


class ServiceEvents:
    """One job's events as a member's front end gets them from the service, and its end."""

    def __init__(self) -> None:
        self.events: list[ServiceEvent] = []
        self.ended = asyncio.Event()

    def __call__(self, event: ServiceEvent) -> None:
        self.events.append(event)
        if isinstance(event, Completed | Failed | Cancelled):
            self.ended.set()

    async def end(self, timeout: float = 300) -> ServiceEvent:
        await asyncio.wait_for(self.ended.wait(), timeout)
        return self.events[-1]

    def ends(self) -> list[ServiceEvent]:
        return [event for event in self.events if isinstance(event, Completed | Failed | Cancelled)]


def tiny_settings(folder: Path, **overrides: Any) -> Settings:
    """Settings for the real bot on ``builtin:tiny`` on the CPU, its database, images and model cache in ``folder``."""
    base = Settings(
        sd_model=TINY_MODEL_ID,
        database_path=folder / "bot.sqlite3",
        images_dir=folder / "images",
        model_cache_dir=folder / "models",
        finetunes_dir=folder / "finetunes",
        device="cpu",
    )
    return replace(base, **overrides)


@asynccontextmanager
async def thread_core(
    folder: Path, model_cache_dir: Path, *, extra_models: tuple[str, ...], daily_credits: int = 100
) -> AsyncIterator[Core]:
    """The bot's core on the tiny models with its worker in a thread, no previews and no NSFW flags, for service tests."""
    from bot.runtime.core import (
        open_core,  # imported here: it brings the workers' transports, which most tests need not
    )

    settings = tiny_settings(
        folder,
        model_cache_dir=model_cache_dir,
        extra_models=extra_models,
        workers="thread",
        preview_interval_s=0.0,
        daily_credits=daily_credits,
    )
    async with open_core(settings, classifier=NoNsfw()) as core:
        yield core


def has_grid(message: StoredMessage) -> bool:
    """A finished result in the fake Discord: images attached, and the grid's 🔄 (or an upscale's Vary) button."""
    return bool(message.attachments) and any(
        b.get("label") == "🔄" or "Vary" in str(b.get("label")) for b in message.buttons
    )


def output_images(output: JobOutput) -> list[Image.Image]:
    """The images a worker's output holds, cut from its lossless grid as the bot cuts them."""
    with Image.open(io.BytesIO(output.grid.data)) as grid:
        return grid_cells(grid.convert("RGB"), output.count)


def pixels(image: Image.Image) -> np.ndarray:
    """An image's pixels as signed integers, so two images can be subtracted."""
    return np.asarray(image, dtype=np.int16)


class MemoryAttempts:
    """The dispatcher's ledger kept in memory, for tests and benchmarks of the workers without a database.

    It behaves as the store's does: each dispatch gives a job its next attempt and a fresh token;
    a cancelled job (``forget``) is left out.
    """

    def __init__(self) -> None:
        self.attempts: dict[int, int] = {}
        self.requeued: list[int] = []
        self.gone: set[int] = set()

    async def start_attempts(self, job_ids: Sequence[int], worker_id: str) -> dict[int, tuple[int, str]]:
        started = {}
        for job_id in job_ids:
            if job_id in self.gone:
                continue
            self.attempts[job_id] = self.attempts.get(job_id, 0) + 1
            started[job_id] = (self.attempts[job_id], f"{job_id}-{self.attempts[job_id]}-{worker_id}")
        return started

    async def requeue(self, job_id: int) -> None:
        self.requeued.append(job_id)

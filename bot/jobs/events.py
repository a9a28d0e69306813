"""What happens to a job, as the workers report it to whoever is listening.

Events are delivered on the event loop, in order, to the listener given when the
job was submitted. They are plain data: the progress preview arrives already encoded
as PNG, and a finished job's ``JobOutput`` holds its grid already classified, (where
withheld) blurred and encoded by the worker, so what is left for the bot is to write the
bytes to disk and post them. Each image's own file is cut from that lossless grid after
the grid is posted (``bot.jobs.outcomes.ResultWriter``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.wire import JobOutput


@dataclass(frozen=True, slots=True)
class Queued:
    job_id: int
    position: int  # 1 = next to start


@dataclass(frozen=True, slots=True)
class Started:
    job_id: int


@dataclass(frozen=True, slots=True, eq=False)
class Progress:
    job_id: int
    step: int
    total: int
    preview: bytes | None = None  # a small PNG of the latents so far, laid out as the final grid


@dataclass(frozen=True, slots=True, eq=False)
class Finished:
    job_id: int
    output: JobOutput


@dataclass(frozen=True, slots=True)
class Failed:
    job_id: int
    message: str  # one sentence for the user


@dataclass(frozen=True, slots=True)
class Cancelled:
    job_id: int


JobEvent = Queued | Started | Progress | Finished | Failed | Cancelled
EventListener = Callable[[JobEvent], None]

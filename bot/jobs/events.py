"""What happens to a job, as the worker reports it to whoever is listening.

Events are delivered on the event loop, in order, to the listener given when the
job was submitted. Finished images are PIL images (encoding them is the
listener's CPU work, done off the loop); the small progress preview arrives
already encoded as PNG, so forwarding it costs the loop nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image


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
    images: tuple[Image.Image, ...]
    seeds: tuple[int, ...]
    # "queued_s": waiting time, "generation_s": time on the GPU of the batch it ran in.
    timings: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Failed:
    job_id: int
    message: str  # one sentence for the user


@dataclass(frozen=True, slots=True)
class Cancelled:
    job_id: int


JobEvent = Queued | Started | Progress | Finished | Failed | Cancelled
EventListener = Callable[[JobEvent], None]

"""What happens to a job, as the worker reports it to whoever is listening.

Events are delivered on the event loop, in order, to the listener given when the
job was submitted. They are plain data, so a worker in another process can send them
(``bot.workers.protocol``): finished images are raw RGB bytes (``RawImage``; encoding
them is the listener's CPU work, done off the loop), and the small progress preview
arrives already encoded as PNG, so forwarding it costs the loop nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image


@dataclass(frozen=True, slots=True, eq=False)
class RawImage:
    """A finished image as 8-bit RGB rows: what a worker hands back, cheap to make and to send."""

    width: int
    height: int
    rgb: bytes

    def __post_init__(self) -> None:
        if len(self.rgb) != self.width * self.height * 3:
            raise ValueError(f"{len(self.rgb)} bytes are not a {self.width}x{self.height} RGB image")

    @classmethod
    def from_pil(cls, image: Image.Image) -> RawImage:
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        return cls(rgb.width, rgb.height, rgb.tobytes())

    def to_pil(self) -> Image.Image:
        from PIL import Image

        return Image.frombytes("RGB", (self.width, self.height), self.rgb)

    def to_wire(self) -> dict[str, Any]:
        return {"width": self.width, "height": self.height, "rgb": self.rgb}

    @classmethod
    def from_wire(cls, message: dict[str, Any]) -> RawImage:
        return cls(int(message["width"]), int(message["height"]), bytes(message["rgb"]))


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
    images: tuple[RawImage, ...]
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

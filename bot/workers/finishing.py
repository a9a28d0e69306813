"""A worker's CPU work on a finished job: classify, blur what is withheld, encode each image and the grid.

It runs beside the GPU, never on it: in a thread pool when the worker is a thread of the
bot, in a side process when the worker is a process of its own, so the process that
launches kernels does nothing else. The images travel to it as ``RawImage`` (RGB bytes,
cheap to copy and to pickle); what comes back is a ``JobOutput`` of encoded files.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.images.archive import grid_stem
from bot.images.grid import compose_grid
from bot.images.metadata import encode_image
from bot.jobs.events import JobOutput
from models.safety import blurred_placeholder, withheld_indices

if TYPE_CHECKING:
    from PIL import Image

    from bot.workers.protocol import RunJob
    from models.safety import ImageClassifier


@dataclass(frozen=True, slots=True, eq=False)
class RawImage:
    """A finished image as 8-bit RGB rows: cheap to make on the GPU side and to hand to another process."""

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


# The classifier of a side process, made once by ``start_side_process`` (a pool initializer).
_side_classifier: ImageClassifier | None = None


def start_side_process(make_classifier: Callable[[], ImageClassifier | None] | None) -> None:
    """Pool initializer: the side process makes its own classifier once (onnxruntime is not picklable)."""
    global _side_classifier
    _side_classifier = make_classifier() if make_classifier is not None else None


def finish_job(
    job: RunJob,
    raw: Sequence[RawImage],
    threshold: float,
    timings: dict[str, float],
    classifier: ImageClassifier | None = None,
) -> JobOutput:
    """Classify (when the job asks), blur what is withheld, and encode each image and the grid.

    ``classifier`` defaults to the side process's own. Each image's metadata names its own seed;
    the grid's names them all.
    """
    started = time.perf_counter()
    classifier = classifier if classifier is not None else _side_classifier
    recipe = job.order.recipe
    images = [image.to_pil() for image in raw]
    withheld: set[int] = set()
    if job.order.classify and classifier is not None:
        withheld = set(withheld_indices(classifier.nsfw_scores(images), threshold))
    files = tuple(
        encode_image(image, recipe.with_seeds((recipe.seeds[index],)), stem=str(index + 1))
        for index, image in enumerate(images)
    )
    shown = [blurred_placeholder(image) if index in withheld else image for index, image in enumerate(images)]
    grid = encode_image(compose_grid(shown), recipe, stem=grid_stem(job.order.job_id))
    return JobOutput(
        job_id=job.order.job_id,
        attempt=job.attempt,
        token=job.token,
        images=files,
        grid=grid,
        withheld=tuple(sorted(withheld)),
        seeds=recipe.seeds,
        timings={**timings, "finishing_s": time.perf_counter() - started},
    )

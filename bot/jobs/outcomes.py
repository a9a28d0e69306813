"""What the service hands back: admitted jobs, finished results, and the events front ends listen to.

It also does the CPU work between a worker's raw images and a result on disk
(``ResultWriter``): classify, blur what is withheld, write each image and the grid with
their recipe in the metadata, and rebuild a stored result after a restart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.images.archive import grid_stem, job_folder, read_grid, write_atomically
from bot.images.grid import compose_grid
from bot.images.metadata import EncodedImage, encode_image
from bot.jobs.events import Cancelled, Failed, Progress, Queued, RawImage, Started
from bot.jobs.recipe import Recipe
from db.records import JobRecord
from models.safety import blurred_placeholder, withheld_indices

if TYPE_CHECKING:
    from PIL import Image

    from bot.policy.nsfw import NsfwDecision
    from models.safety import ImageClassifier

#: A job as the store keeps it, with its recipe read back as a ``Recipe``.
Job = JobRecord[Recipe]


@dataclass(frozen=True, slots=True)
class SubmittedJob:
    job_id: int
    position: int
    recipe: Recipe
    cost: int
    notice: str | None = None  # something the user should know, such as a prompt cut at the token limit


@dataclass(frozen=True, slots=True, eq=False)
class JobResult:
    """A finished job as stored: files on disk, which images were withheld, what was refunded."""

    job: Job
    grid: EncodedImage
    image_paths: tuple[Path, ...]
    withheld: frozenset[int]
    refunded: int

    @property
    def recipe(self) -> Recipe:
        return self.job.recipe


@dataclass(frozen=True, slots=True)
class WaitingJob:
    job_id: int
    position: int  # 0: running now; 1: next
    prompt: str


@dataclass(frozen=True, slots=True)
class DeliveryVerdict:
    """After a failed try to post a result: retry in so many seconds, or ``None``: given up, refunded."""

    retry_in_s: float | None
    refunded: int


@dataclass(frozen=True, slots=True, eq=False)
class Completed:
    job_id: int
    result: JobResult


ServiceEvent = Queued | Started | Progress | Completed | Failed | Cancelled
ServiceListener = Callable[[ServiceEvent], None]


@dataclass(frozen=True, slots=True, eq=False)
class WrittenImages:
    grid: EncodedImage
    paths: list[Path]
    withheld: set[int]


class ResultWriter:
    """The files of finished jobs under ``images_dir``; every method is CPU or disk work, run off the loop."""

    def __init__(self, images_dir: Path, classifier: ImageClassifier | None, nsfw_threshold: float) -> None:
        self._images_dir = images_dir
        self._classifier = classifier
        self._threshold = nsfw_threshold

    def write(self, job_id: int, recipe: Recipe, raw: Sequence[RawImage], decision: NsfwDecision) -> WrittenImages:
        """Classify, blur what is withheld, write each image and the grid."""
        images = [image.to_pil() for image in raw]
        withheld: set[int] = set()
        if decision.classify_images and self._classifier is not None:
            scores = self._classifier.nsfw_scores(images)
            withheld = set(withheld_indices(scores, self._threshold))
        folder = job_folder(self._images_dir, job_id)
        folder.mkdir(parents=True, exist_ok=True)
        paths: list[Path] = []
        shown: list[Image.Image] = []
        for index, image in enumerate(images):
            encoded = encode_image(image, recipe.with_seeds((recipe.seeds[index],)), stem=str(index + 1))
            path = folder / encoded.filename
            write_atomically(path, encoded.data)
            paths.append(path)
            shown.append(blurred_placeholder(image) if index in withheld else image)
        grid = encode_image(compose_grid(shown), recipe, stem=grid_stem(job_id))
        write_atomically(folder / grid.filename, grid.data)
        return WrittenImages(grid, paths, withheld)

    def stored(self, job: Job) -> JobResult:
        """A finished job's result rebuilt from its row and the files; ``OSError`` when they are gone."""
        grid = read_grid(self._images_dir, job.id)
        paths = tuple(Path(path) for path in job.image_paths)
        return JobResult(job, grid, paths, frozenset(job.withheld), job.refunded)

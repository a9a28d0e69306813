"""What the service hands back: admitted jobs, finished results, and the events front ends listen to.

It also keeps a result's files (``ResultWriter``): it writes what a worker encoded, and
rebuilds a stored result after a restart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.images.archive import job_folder, read_grid, write_atomically
from bot.images.metadata import EncodedImage
from bot.jobs.events import Cancelled, Failed, JobOutput, Progress, Queued, Started
from bot.jobs.recipe import Recipe
from db.records import JobRecord

if TYPE_CHECKING:
    pass

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


class ResultWriter:
    """The files of finished jobs under ``images_dir``; every method is disk work, run off the loop."""

    def __init__(self, images_dir: Path) -> None:
        self._images_dir = images_dir

    def write(self, job_id: int, output: JobOutput) -> list[Path]:
        """Each image and the grid the worker encoded, written atomically; returns the images' paths."""
        folder = job_folder(self._images_dir, job_id)
        folder.mkdir(parents=True, exist_ok=True)
        paths: list[Path] = []
        for image in output.images:
            path = folder / image.filename
            write_atomically(path, image.data)
            paths.append(path)
        write_atomically(folder / output.grid.filename, output.grid.data)
        return paths

    def stored(self, job: Job) -> JobResult:
        """A finished job's result rebuilt from its row and the files; ``OSError`` when they are gone."""
        grid = read_grid(self._images_dir, job.id)
        paths = tuple(Path(path) for path in job.image_paths)
        return JobResult(job, grid, paths, frozenset(job.withheld), job.refunded)

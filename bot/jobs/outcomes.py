"""What the service hands back: admitted jobs, finished results, and the events front ends listen to.

It also keeps a result's files (``ResultWriter``): it writes the grid a worker encoded,
cuts each image's own file from it, and rebuilds a stored result after a restart.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from PIL import Image

from bot.images.archive import image_path, job_folder, read_grid, write_atomically
from bot.images.encoding import EncodedImage, encode_image
from bot.images.grid import grid_cells
from bot.images.metadata import infotext
from bot.images.thumbnails import encode_thumbnail, thumbnail_path
from bot.jobs.events import Cancelled, Failed, JobOutput, Progress, Queued, Started
from bot.jobs.recipe import Recipe
from db.records import JobRecord

#: A job as the store keeps it, with its recipe read back as a ``Recipe``.
Job = JobRecord[Recipe]


@dataclass(frozen=True, slots=True)
class SubmittedJob:
    job_id: int
    position: int
    recipe: Recipe
    cost: int
    notice: str | None = None  # something the user should know, such as a prompt cut at the token limit
    waiting: str | None = None  # why it waits though first in line (no worker online): true until it starts


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
    cost: int = 0  # the credits it was charged


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


@dataclass(frozen=True, slots=True)
class Delivered:
    """A message now holds a finished job's result (``None``: posted where no message id came back)."""

    job_id: int
    message_id: int | None


@dataclass(frozen=True, slots=True)
class DeliveryFailed:
    """A try to post a finished job's result failed; ``verdict`` says when the next is, or that it was given up."""

    job_id: int
    verdict: DeliveryVerdict


@dataclass(frozen=True, slots=True)
class Admitted:
    """A request passed every check, was charged and recorded, and is queued (a resumed job is not admitted again)."""

    job_id: int
    model: str
    images: int
    cost: int


class RefusalReason(StrEnum):
    """Why admission refused a request: one per kind of refusal a member can be told."""

    PROMPT = "prompt"  # the content filter or the channel's NSFW policy
    QUOTA = "quota"
    QUEUE_FULL = "queue_full"
    STORAGE = "storage"  # the database refused to record it for now
    MODEL = "model"  # the model cannot be had (not loaded, not served)
    INVALID = "invalid"  # anything else the request asked that admission cannot give


@dataclass(frozen=True, slots=True)
class Refused:
    """Admission refused a request (nothing charged, no job recorded: ``job_id`` is None)."""

    reason: RefusalReason
    job_id: None = None


#: What an observer of every job sees: each job's events, its result's delivery, and admission's verdicts.
ObservedEvent = ServiceEvent | Delivered | DeliveryFailed | Admitted | Refused
JobObserver = Callable[[ObservedEvent], None]


class ResultWriter:
    """The files of finished jobs under ``images_dir``; every method is disk work, run off the loop."""

    def __init__(self, images_dir: Path, *, thumbnails: bool = False) -> None:
        self._images_dir = images_dir
        # The web gallery is on: a result its galleries may show gets its thumbnails with its images, from the
        # cells already in memory, so a member's first visit does not wait for them.
        self._thumbnails = thumbnails

    def write(self, job_id: int, output: JobOutput) -> list[Path]:
        """The grid the worker encoded, written atomically; returns where each image's file goes.

        Those files are written by ``write_images``, after the grid is posted.
        """
        folder = job_folder(self._images_dir, job_id)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(folder / output.grid.filename, output.grid.data)
        return [image_path(self._images_dir, job_id, index) for index in range(output.count)]

    def write_images(self, job: Job) -> None:
        """Each image's own file, cut from the job's grid, with its own seed in the parameters: those missing.

        A crash between posting a grid and writing these loses nothing: the next call writes them.
        ``OSError`` when the grid itself is gone.
        """
        paths = [Path(path) for path in job.image_paths]
        missing = [index for index, path in enumerate(paths) if not path.exists()]
        if not missing:
            return
        grid = read_grid(self._images_dir, job.id)
        with Image.open(io.BytesIO(grid.data)) as opened:
            cells = grid_cells(opened.convert("RGB"), len(paths))
        recipe = job.recipe
        thumbnails = (
            self._thumbnails and job.guild_id is not None and job.age_restricted is False and not job.nsfw_allowed
        )
        for index in missing:
            own = recipe.with_seeds((recipe.seeds[index],))
            encoded = encode_image(cells[index], infotext(own), stem=str(index + 1), limit_bytes=None)
            write_atomically(paths[index], encoded.data)
            if thumbnails and index not in job.withheld:
                write_atomically(thumbnail_path(paths[index], index), encode_thumbnail(cells[index]))

    def stored(self, job: Job) -> JobResult:
        """A finished job's result rebuilt from its row and the files; ``OSError`` when they are gone."""
        grid = read_grid(self._images_dir, job.id)
        paths = tuple(Path(path) for path in job.image_paths)
        return JobResult(job, grid, paths, frozenset(job.withheld), job.refunded)

"""A worker's CPU work on a finished batch: classify it, blur what is withheld, encode each job's grid.

It runs beside the GPU, never on it: in a thread pool when the worker is a thread of the
bot, in a side process when the worker is a process of its own, so the process that
launches kernels does nothing else. The images travel to it as ``RawImage`` (RGB bytes,
cheap to copy and to pickle); what comes back is a ``JobOutput`` a job.

Only the grid is encoded here, losslessly: it is what Discord is shown first, and each
image's own file is cut from it by the bot after posting (``bot.images.grid.grid_cells``).
The classifier sees the whole batch in one call; the jobs' grids are then encoded side by side
on a few threads (Pillow's encoder runs without the GIL), so a batch of two jobs is ready in
about the time of one.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.images.encoding import encode_image
from bot.images.grid import compose_grid
from bot.wire import JobOutput
from models.safety import blurred_placeholder, withheld_indices

if TYPE_CHECKING:
    from PIL import Image

    from bot.wire import RunJob
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

# Threads that encode a batch's grids side by side: as many as a batch has jobs, within the cores.
MAX_ENCODERS = 4
_encoders: ThreadPoolExecutor | None = None
_encoders_lock = threading.Lock()


def _encoder_pool() -> ThreadPoolExecutor:
    global _encoders
    with _encoders_lock:
        if _encoders is None:
            workers = max(1, min(MAX_ENCODERS, os.cpu_count() or 1))
            _encoders = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="latentcord-encode")
        return _encoders


def start_side_process(make_classifier: Callable[[], ImageClassifier | None] | None) -> None:
    """Pool initializer: the side process makes its own classifier once (onnxruntime is not picklable)."""
    global _side_classifier
    atexit.register(exit_without_native_teardown)
    _side_classifier = make_classifier() if make_classifier is not None else None


def exit_without_native_teardown(code: int = 0) -> None:
    """End a worker's process once Python's own exit work is done, skipping the C++ libraries' static destructors.

    A native library (torch's CUDA build, onnxruntime) may still hold a thread of its own when its destructors run at
    exit, and then aborts with "terminate called without an active exception" on stderr: noise for the owner, at
    the moment the bot says why it stopped. Registered with ``atexit`` (it runs first, as the last registered), after
    which nothing is left to do that ``os._exit`` would skip but those destructors.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def finish_batch(
    jobs: Sequence[tuple[RunJob, Sequence[RawImage]]],
    threshold: float,
    timings: Sequence[dict[str, float]],
    classifier: ImageClassifier | None = None,
    texts: Sequence[Sequence[str]] | None = None,
) -> list[JobOutput]:
    """Each job of a batch with its images: classified in one call, withheld ones blurred, its grid encoded.

    ``classifier`` defaults to the side process's own; only jobs that ask are classified.
    ``timings`` are each job's so far, in the order of ``jobs``. ``texts``: what each job wrote, where the batch
    wrote instead of drawing (/describe: its images are the one picture it read, its seed the request's first).
    """
    started = time.perf_counter()
    classifier = classifier if classifier is not None else _side_classifier
    images = [[image.to_pil() for image in raw] for _, raw in jobs]
    checked = [index for index, (job, _) in enumerate(jobs) if job.request.classify and classifier is not None]
    batch = [image for index in checked for image in images[index]]
    scores = classifier.nsfw_scores(batch) if classifier is not None and batch else []
    withheld: dict[int, frozenset[int]] = {}
    offset = 0
    for index in checked:
        count = len(images[index])
        withheld[index] = withheld_indices(scores[offset : offset + count], threshold)
        offset += count
    classified_s = time.perf_counter() - started

    def finish(index: int) -> JobOutput:
        began = time.perf_counter()
        job = jobs[index][0]
        hidden = withheld.get(index, frozenset())
        shown = [blurred_placeholder(image) if n in hidden else image for n, image in enumerate(images[index])]
        request = job.request
        grid = encode_image(compose_grid(shown), request.parameters, stem=request.stem, limit_bytes=None)
        written = tuple(texts[index]) if texts is not None else ()
        return JobOutput(
            job_id=request.job_id,
            attempt=job.attempt,
            token=job.token,
            grid=grid,
            withheld=tuple(sorted(hidden)),
            seeds=request.seeds[: len(shown)] if written else request.seeds,
            timings={**timings[index], "finishing_s": classified_s + time.perf_counter() - began},
            texts=written,
        )

    if len(jobs) == 1:
        return [finish(0)]
    return list(_encoder_pool().map(finish, range(len(jobs))))

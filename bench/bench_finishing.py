"""What a worker does between the last denoising step and sending a batch's Result: grids only, or every file.

Grid first: the worker's side process classifies a batch and encodes each job's grid, the grids side by
side on a few threads, and the bot cuts each image's own file from the grid after posting it. Before, the
side process also encoded every image as a PNG of its own, job after job, before the Result could leave. This measures both on the same batch (2 jobs of 4
images, the batch of 8 that two /imagine make), with the test picture of ``bench_png.py``, at SD1.5's 512 px
and SDXL's 1024 px, no classifier (the same in both):

    python bench/bench_finishing.py
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_png import picture
from bot.gpu.finishing import RawImage, finish_batch
from bot.images.encoding import encode_image
from bot.images.grid import compose_grid
from bot.jobs.generation import work_order
from bot.wire import RunJob
from tests.recipes import a_recipe

JOBS, IMAGES, REPEAT = 2, 4, 5


def batch(side: int) -> list[tuple[RunJob, list[RawImage]]]:
    jobs = []
    for number in range(1, JOBS + 1):
        recipe = a_recipe(seeds=tuple(range(IMAGES)), width=side, height=side)
        images = [RawImage.from_pil(picture(side, seed=number * IMAGES + n)) for n in range(IMAGES)]
        jobs.append((RunJob(work_order(number, number, recipe, classify=False).request, 1, "token"), images))
    return jobs


def every_file(jobs: list[tuple[RunJob, list[RawImage]]]) -> None:
    """The old way: each image's PNG and then the grid, in the side process, before the Result."""
    for job, raw in jobs:
        images = [image.to_pil() for image in raw]
        parameters = job.request.parameters  # the grid's; each image's own differs only in its seed
        for n, image in enumerate(images):
            encode_image(image, parameters, stem=str(n + 1))
        encode_image(compose_grid(images), parameters, stem="grid")


def best_ms(work: Callable[[], object]) -> float:
    work()
    times = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times) * 1000


def main() -> None:
    print(f"{JOBS} jobs x {IMAGES} images, best of {REPEAT}: time from the last step to the Result leaving")
    for side in (512, 1024):
        jobs = batch(side)
        before = best_ms(partial(every_file, jobs))
        now = best_ms(partial(finish_batch, jobs, 0.5, [{}] * JOBS))
        print(f"  {side} px: every file {before:.0f} ms; grids only {now:.0f} ms ({before / now:.1f}x sooner)")


if __name__ == "__main__":
    main()

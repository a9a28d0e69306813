"""A finished batch on the CPU side of a worker: one classifier call, each job's grid, and its images cut back out."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from bot.gpu.finishing import RawImage, finish_batch
from bot.images.grid import compose_grid, grid_cells
from bot.jobs.generation import work_order
from bot.wire import RunJob
from tests.helpers import NoNsfw, output_images, pixels
from tests.recipes import a_recipe


def noise(seed: int, size: tuple[int, int] = (64, 48)) -> Image.Image:
    rows = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(rows, "RGB")


def job(job_id: int, seeds: tuple[int, ...], *, classify: bool = True) -> RunJob:
    order = work_order(job_id, job_id, a_recipe(seeds=seeds, width=64, height=48), classify=classify)
    return RunJob(order.request, attempt=1, token=f"token-{job_id}")


def test_a_batch_is_classified_in_one_call_and_each_job_gets_its_own_grid() -> None:
    images = {1: [noise(1), noise(2)], 2: [noise(3)], 3: [noise(4), noise(5), noise(6)]}
    # Job 2's channel allows NSFW: it is not classified. The batch's third image checked is job 3's first.
    batch = [
        (job(1, (11, 12)), images[1]),
        (job(2, (21,), classify=False), images[2]),
        (job(3, (31, 32, 33)), images[3]),
    ]
    classifier = NoNsfw(flagged=[2])
    raw = [(run, [RawImage.from_pil(image) for image in own]) for run, own in batch]

    outputs = finish_batch(raw, 0.5, [{"generation_s": 1.0}] * 3, classifier)

    assert classifier.calls == 1
    assert [output.job_id for output in outputs] == [1, 2, 3]
    assert [output.withheld for output in outputs] == [(), (), (0,)]
    assert [output.token for output in outputs] == ["token-1", "token-2", "token-3"]
    assert all(output.timings["generation_s"] == 1.0 and output.timings["finishing_s"] >= 0 for output in outputs)
    for output, (run, own) in zip(outputs, batch, strict=True):
        with Image.open(io.BytesIO(output.grid.data)) as grid:
            assert grid.format == "PNG" and output.grid.filename == f"latentcord-{output.job_id}.png"
            assert grid.size == compose_grid(own).size
            assert f"Seed: {run.request.seeds[0]}," in grid.text["parameters"]
        cut = output_images(output)
        assert len(cut) == output.count == len(own)
        for index, (image, original) in enumerate(zip(cut, own, strict=True)):
            if index in output.withheld:  # blurred past recognition in the grid and in its file
                assert np.abs(pixels(image) - pixels(original)).mean() > 20
            else:  # lossless: the cut image is the generated one, pixel for pixel
                assert np.array_equal(pixels(image), pixels(original))


def test_without_a_classifier_nothing_is_withheld_and_the_grid_stays_lossless_past_discords_limit() -> None:
    big = [noise(seed, (1024, 1024)) for seed in range(4)]  # 12 MB of noise: a PNG past 10 MB
    (output,) = finish_batch([(job(9, (1, 2, 3, 4)), [RawImage.from_pil(image) for image in big])], 0.5, [{}])
    assert output.withheld == () and output.grid.content_type == "image/png" and len(output.grid.data) > 10 * 2**20
    assert all(np.array_equal(pixels(a), pixels(b)) for a, b in zip(output_images(output), big, strict=True))


def test_grid_cells_undo_compose_grid_for_one_to_four_images() -> None:
    for count in range(1, 5):
        images = [noise(seed, (40, 24)) for seed in range(count)]
        cells = grid_cells(compose_grid(images), count)
        assert [np.array_equal(pixels(a), pixels(b)) for a, b in zip(cells, images, strict=True)] == [True] * count

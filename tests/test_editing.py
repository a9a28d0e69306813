"""Edits by instruction and reference images through the service, on the tiny FLUX.2 klein.

What a member observes: the grid's size and pixels, its parameters, the sentence a refusal gives and
that nothing was charged; and that references reach the pipeline as images (with the same seed, a
reference changes the images, and the same reference gives the same images again).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bot.errors import InvalidRequest
from bot.images.grid import grid_cells
from bot.jobs.admission import Origin
from bot.jobs.outcomes import Completed
from bot.jobs.requests import ImagineOptions
from bot.runtime.core import Core, open_core
from models.tiny_flow import TINY_KLEIN_MODEL_ID, TINY_ZIMAGE_MODEL_ID
from tests.helpers import NoNsfw, ServiceEvents, thread_core, tiny_settings

ROOT = Path(__file__).resolve().parent.parent
GUILD, CHANNEL, MEMBER = 10, 20, 30
ORIGIN = Origin(user_id=MEMBER, guild_id=GUILD, channel_id=CHANNEL)


def png(width: int, height: int, colour: tuple[int, int, int] = (200, 40, 40), *, noise: int | None = None) -> bytes:
    if noise is None:
        image = Image.new("RGB", (width, height), colour)
    else:
        pixels = np.random.default_rng(noise).integers(0, 256, (height, width, 3), dtype=np.uint8)
        image = Image.fromarray(pixels, "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def cells(ended: Completed) -> list[np.ndarray]:
    with Image.open(io.BytesIO(ended.result.grid.data)) as grid:
        return [np.asarray(cell) for cell in grid_cells(grid.convert("RGB"), ended.result.job.recipe.count)]


def parameters(ended: Completed) -> str:
    with Image.open(io.BytesIO(ended.result.grid.data)) as grid:
        return str(grid.text["parameters"])


@pytest.fixture
async def core(tmp_path: Path, model_cache_dir: Path) -> AsyncIterator[Core]:
    async with thread_core(tmp_path, model_cache_dir, extra_models=(TINY_KLEIN_MODEL_ID,), daily_credits=1000) as core:
        yield core


async def finished(start) -> Completed:  # type: ignore[no-untyped-def]
    events = ServiceEvents()
    await start(events)
    ended = await events.end()
    assert isinstance(ended, Completed), ended
    return ended


async def test_an_edit_of_one_picture_is_four_edits_at_its_aspect_on_the_edit_model(core: Core) -> None:
    wide = png(200, 100, noise=1)
    ended = await finished(lambda events: core.service.edit_pictures("make it night --seed 5", [wide], ORIGIN, events))
    recipe = ended.result.job.recipe
    assert (recipe.kind, recipe.model, recipe.count) == ("edit", TINY_KLEIN_MODEL_ID, 4)
    assert recipe.width > recipe.height and recipe.width % 16 == 0 and recipe.height % 16 == 0
    assert recipe.source is not None and Path(recipe.source).is_file()
    assert recipe.prompt == "make it night" and recipe.seeds == (5, 6, 7, 8)
    assert 'Edit: "make it night" of a picture' in parameters(ended)
    with Image.open(io.BytesIO(ended.result.grid.data)) as grid:
        assert grid.size == (2 * recipe.width, 2 * recipe.height)


async def test_references_reach_the_pipeline_as_images(core: Core) -> None:
    reference = png(64, 64, noise=2)

    async def imagine(references: list[bytes]) -> Completed:
        options = ImagineOptions(prompt="a red fox", seed=3, count=2, model=TINY_KLEIN_MODEL_ID)
        return await finished(lambda events: core.service.imagine(options, ORIGIN, events, references=references))

    plain, guided, again = await imagine([]), await imagine([reference]), await imagine([reference])
    assert guided.result.job.recipe.reference_images and not plain.result.job.recipe.reference_images
    assert any(not np.array_equal(a, b) for a, b in zip(cells(plain), cells(guided), strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(cells(guided), cells(again), strict=True))
    assert "References: a picture" in parameters(guided)


async def test_an_edit_of_three_pictures_reads_all_three_and_a_ref_names_a_posted_image(core: Core) -> None:
    first = await finished(
        lambda events: core.service.edit_pictures(
            "put the cat from image 2 on the sofa",
            [png(64, 64, noise=3), png(64, 64, noise=4), png(80, 64)],
            ORIGIN,
            events,
        )
    )
    recipe = first.result.job.recipe
    assert len(recipe.reference_images) == 2 and all(Path(path).is_file() for path in recipe.reference_images)
    assert "references: 2 pictures" in parameters(first)
    job = first.result.job.id
    again = await finished(
        lambda events: core.service.edit_pictures(f"make it night --ref {job}:2", [png(64, 64)], ORIGIN, events)
    )
    assert f'Edit: "make it night" of a picture; references: job {job} image 2' in parameters(again)


async def test_without_an_edit_capable_model_edit_and_references_say_which_model_to_configure(
    tmp_path: Path, model_cache_dir: Path
) -> None:
    settings = tiny_settings(tmp_path, model_cache_dir=model_cache_dir, workers="thread", daily_credits=100)
    async with open_core(settings, classifier=NoNsfw()) as core:
        with pytest.raises(InvalidRequest) as edit:
            await core.service.edit_pictures("make it night", [png(64, 64)], ORIGIN, ServiceEvents())
        assert "SD_EDIT_MODEL" in str(edit.value) and "FLUX.2 klein" in str(edit.value)
        with pytest.raises(InvalidRequest) as guided:
            await core.service.imagine(
                ImagineOptions(prompt="a fox"), ORIGIN, ServiceEvents(), references=[png(64, 64)]
            )
        assert str(guided.value) == str(edit.value)
        assert (await core.store.usage(GUILD, MEMBER)).used == 0
        assert not list((settings.images_dir / "sources").glob("*.png"))


async def test_a_model_that_reads_no_references_is_refused_when_chosen(core: Core, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="cannot edit by instruction"):
        await core.service.edit_pictures("make it night", [png(64, 64)], ORIGIN, ServiceEvents(), model="builtin:tiny")
    assert TINY_ZIMAGE_MODEL_ID  # (Z-Image reads none either: the family entry says so)


def test_python_m_bot_edit_writes_the_grid_of_four_edits(tmp_path: Path, model_cache_dir: Path) -> None:
    (tmp_path / "street.png").write_bytes(png(128, 64, noise=5))
    (tmp_path / "cat.png").write_bytes(png(64, 64, (20, 200, 20)))
    env = {
        **{key: value for key, value in os.environ.items() if key not in ("DISCORD_TOKEN", "SD_EXTRA_MODELS")},
        "PYTHONPATH": str(ROOT),
        "SD_MODEL": TINY_KLEIN_MODEL_ID,
        "MODEL_CACHE_DIR": str(model_cache_dir),
        "DEVICE": "cpu",
    }
    command = [sys.executable, "-m", "bot", "edit", "make it night", "--image", "street.png", "--image", "cat.png"]
    done = subprocess.run(
        [*command, "--out", "night.png", "--seed", "7"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "seeds: 7 8 9 10" in done.stdout
    with Image.open(tmp_path / "night.png") as grid:
        assert grid.width > grid.height  # four edits at the street's wide aspect
        assert 'Edit: "make it night" of a picture; references: a picture' in grid.text["parameters"]
    refused = subprocess.run(
        [*command, "--out", "x.png"],
        cwd=tmp_path,
        env={**env, "SD_MODEL": "builtin:tiny"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 2 and "SD_EDIT_MODEL" in refused.stderr and not (tmp_path / "x.png").exists()

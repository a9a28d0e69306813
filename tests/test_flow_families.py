"""FLUX.2 klein and Z-Image beside Stable Diffusion: their tiny random-weight builds through the engine, the
service and the command line, as a member would use them (issue 23)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bot.errors import InvalidRequest
from bot.images.edits import feather_px
from bot.images.grid import grid_cells
from bot.jobs.requests import ImagineOptions
from bot.jobs.service import Completed, Origin
from bot.runtime.core import Core
from models.engine import DiffusionEngine, EngineConfig
from models.tiny_flow import TINY_KLEIN_MODEL_ID, TINY_ZIMAGE_MODEL_ID
from models.types import BatchSpec, GenerationBatch, ImageTask, Operation
from tests.discord_bot_helpers import finished_grid, press_and_wait, running_bot
from tests.discord_bot_helpers import imagine as discord_imagine
from tests.fakediscord import FakeDiscord
from tests.fakediscord.server import GuildSetup
from tests.helpers import ServiceEvents, pixels, thread_core, tiny_settings

ROOT = Path(__file__).resolve().parent.parent
FLOW_MODELS = (TINY_KLEIN_MODEL_ID, TINY_ZIMAGE_MODEL_ID)
GUILD, CHANNEL, MEMBER, OTHER = 100, 200, 1, 2


@pytest.fixture(scope="module")
def flow_engine(model_cache_dir: Path) -> Iterator[DiffusionEngine]:
    yield DiffusionEngine(EngineConfig(device="cpu", cache_dir=model_cache_dir))


def spec_for(
    engine: DiffusionEngine, model: str, operation: Operation = Operation.TXT2IMG, **changes: object
) -> BatchSpec:
    preset = engine.load(model)
    values: dict[str, object] = {
        "model": model,
        "operation": operation,
        "width": 64,
        "height": 64,
        "steps": preset.steps,
        "guidance": preset.guidance,
        "scheduler": preset.scheduler,
        **changes,
    }
    return BatchSpec(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("model", FLOW_MODELS)
def test_each_family_draws_the_same_image_from_a_seed_alone_or_batched_with_others(
    flow_engine: DiffusionEngine, model: str
) -> None:
    spec = spec_for(flow_engine, model)
    alone = flow_engine.run(GenerationBatch(spec, (ImageTask("a red fox", "", 5),))).images[0]
    batched = flow_engine.run(
        GenerationBatch(spec, (ImageTask("a lighthouse", "", 9), ImageTask("a red fox", "", 5)))
    ).images
    assert alone.size == (64, 64)
    assert np.array_equal(pixels(alone), pixels(batched[1]))  # another member's image beside it changes nothing
    assert not np.array_equal(pixels(batched[0]), pixels(batched[1]))


@pytest.mark.parametrize("model", FLOW_MODELS)
def test_a_variation_an_upscale_and_a_region_edit_keep_their_contracts(
    flow_engine: DiffusionEngine, model: str
) -> None:
    source = flow_engine.run(GenerationBatch(spec_for(flow_engine, model), (ImageTask("a fox", "", 3),))).images[0]
    variation = flow_engine.run(
        GenerationBatch(
            spec_for(flow_engine, model, Operation.VARIATION, strength=0.6), (ImageTask("a fox", "", 4, source),)
        )
    ).images[0]
    assert variation.size == (64, 64) and not np.array_equal(pixels(variation), pixels(source))
    upscale = flow_engine.run(
        GenerationBatch(
            spec_for(flow_engine, model, Operation.UPSCALE, width=128, height=128, strength=0.5),
            (ImageTask("a fox", "", 3, source),),
        )
    ).images[0]
    assert upscale.size == (128, 128)
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    region = flow_engine.run(
        GenerationBatch(
            spec_for(flow_engine, model, Operation.INPAINT, strength=1.0), (ImageTask("a fox", "", 6, source, mask),)
        )
    ).images[0]
    edited, before = pixels(region), pixels(source)
    outside = np.asarray(mask) == 0
    assert np.array_equal(edited[outside], before[outside])  # exactly the source where the mask is black
    assert not np.array_equal(edited[~outside], before[~outside])


def test_a_size_off_the_transformer_s_grid_is_refused_with_a_sentence(flow_engine: DiffusionEngine) -> None:
    spec = spec_for(flow_engine, TINY_ZIMAGE_MODEL_ID, width=72, height=64)
    with pytest.raises(Exception, match="multiples of 16, not 72x64"):
        flow_engine.run(GenerationBatch(spec, (ImageTask("a fox", "", 1),)))


# -- through the service -----------------------------------------------------------------------


@pytest.fixture
async def core(tmp_path: Path, model_cache_dir: Path) -> AsyncIterator[Core]:
    async with thread_core(tmp_path, model_cache_dir, extra_models=FLOW_MODELS) as core:
        yield core


async def imagine(core: Core, prompt: str, model: str, **options: object) -> tuple[object, Completed]:
    ends = ServiceEvents()
    origin = Origin(user_id=MEMBER, guild_id=GUILD, channel_id=CHANNEL)
    submitted = await core.service.imagine(ImagineOptions(prompt=prompt, model=model, **options), origin, ends)  # type: ignore[arg-type]
    ended = await ends.end(300)
    assert isinstance(ended, Completed), ended
    return submitted, ended


@pytest.mark.parametrize("model", FLOW_MODELS)
async def test_imagine_on_a_flow_model_posts_a_grid_whose_seeds_reproduce_it(core: Core, model: str) -> None:
    _, first = await imagine(core, "a red fox in snow", model, seed=11)
    _, again = await imagine(core, "a red fox in snow", model, seed=11)
    with Image.open(io.BytesIO(first.result.grid.data)) as grid:
        assert grid.size == (128, 128)
        assert "Sampler: Euler," in grid.text["parameters"] and f'Model: "{model}"' in grid.text["parameters"]
        cells = [pixels(cell) for cell in grid_cells(grid.convert("RGB"), 4)]
    with Image.open(io.BytesIO(again.result.grid.data)) as grid:
        repeated = [pixels(cell) for cell in grid_cells(grid.convert("RGB"), 4)]
    assert all(np.array_equal(cell, other) for cell, other in zip(cells, repeated, strict=True))
    assert len({cell.tobytes() for cell in cells}) == 4  # four seeds, four images
    assert first.result.job.recipe.scheduler == "FlowMatchEulerDiscreteScheduler"


async def test_weights_are_taken_out_and_a_negative_prompt_dropped_where_the_family_reads_none(core: Core) -> None:
    submitted, ended = await imagine(core, "a (red:1.4) fox, [snow]", TINY_KLEIN_MODEL_ID, negative="blurry", seed=3)
    notice = submitted.notice or ""  # type: ignore[attr-defined]
    assert "Prompt weights were ignored: tiny (FLUX.2 klein) models do not read them." in notice
    assert "The negative prompt was ignored: tiny (FLUX.2 klein) models do not use one." in notice
    recipe = ended.result.job.recipe
    assert (recipe.prompt, recipe.negative_prompt) == ("a red fox, snow", "")
    # Z-Image reads a negative prompt: kept, and only the weights are taken out.
    submitted, ended = await imagine(core, "a (red:1.4) fox", TINY_ZIMAGE_MODEL_ID, negative="blurry", seed=3)
    notice = submitted.notice or ""  # type: ignore[attr-defined]
    assert "Prompt weights were ignored: tiny (Z-Image) models do not read them." in notice and "negative" not in notice
    assert ended.result.job.recipe.negative_prompt == "blurry"


async def test_a_variation_upscale_and_zoom_out_of_a_flow_job_finish(core: Core) -> None:
    _, first = await imagine(core, "a lighthouse", TINY_ZIMAGE_MODEL_ID, seed=21)
    job = first.result.job.id
    origin = Origin(user_id=MEMBER, guild_id=GUILD, channel_id=CHANNEL)
    for start, size in (
        (lambda ends: core.service.variation(job, 0, origin, ends), (128, 128)),
        (lambda ends: core.service.upscale(job, 1, origin, ends), (128, 128)),
        (lambda ends: core.service.edit(job, 2, "zoom:2", origin, ends), (128, 128)),
    ):
        ends = ServiceEvents()
        await start(ends)
        ended = await ends.end(300)
        assert isinstance(ended, Completed), ended
        with Image.open(io.BytesIO(ended.result.grid.data)) as grid:
            assert grid.size == size


async def test_a_pan_of_a_wide_flow_image_keeps_to_the_transformer_s_grid(core: Core) -> None:
    _, first = await imagine(core, "a harbour", TINY_KLEIN_MODEL_ID, seed=8, aspect="16:9", count=1)
    assert (first.result.job.recipe.width, first.result.job.recipe.height) == (80, 48)
    ends = ServiceEvents()
    origin = Origin(user_id=MEMBER, guild_id=GUILD, channel_id=CHANNEL)
    await core.service.edit(first.result.job.id, 0, "pan:left", origin, ends)
    ended = await ends.end(300)
    assert isinstance(ended, Completed), ended
    # Half of 80 is 40, which klein's 16-pixel grid cannot take: the new strip is 32 wide (SD's would be 40).
    assert (ended.result.job.recipe.width, ended.result.job.recipe.height) == (112, 48)
    with Image.open(io.BytesIO(ended.result.grid.data)) as grid:
        cells = [pixels(cell) for cell in grid_cells(grid.convert("RGB"), 4)]
    with Image.open(io.BytesIO(first.result.grid.data)) as source:
        kept = pixels(source.convert("RGB"))
    band = feather_px(112, 48)  # the ramp along the seam, inside the kept picture
    # The picture itself is kept, pixel for pixel, beyond the ramp.
    assert all(np.array_equal(cell[:, 32 + band :], kept[:, band:]) for cell in cells)


async def test_an_sd_embedding_on_a_flow_model_is_refused_naming_both_families(core: Core, tmp_path: Path) -> None:
    from bench._architectures import write_tiny_loras
    from bot.jobs.moderation import ModerationService

    (lora,) = write_tiny_loras(tmp_path, ["ink.safetensors"])
    data = lora.read_bytes()

    async def read() -> bytes:
        return data

    moderation = ModerationService(store=core.store, settings=core.settings, worker=core.worker)
    await moderation.add_fine_tune(
        GUILD, "lora", "inkstyle", filename="ink.safetensors", size=len(data), read=read, actor_id=OTHER
    )
    origin = Origin(user_id=MEMBER, guild_id=GUILD, channel_id=CHANNEL)
    with pytest.raises(InvalidRequest) as refused:
        await core.service.imagine(
            ImagineOptions(prompt="a fox <lora:inkstyle:0.8>", model=TINY_KLEIN_MODEL_ID), origin, ServiceEvents()
        )
    assert str(refused.value) == (
        f"The lora inkstyle is for tiny (SD) models; {TINY_KLEIN_MODEL_ID} is a tiny (FLUX.2 klein) model."
    )
    usage = await core.store.usage(GUILD, MEMBER)
    assert usage.used == 0  # refused before anything was charged


# -- the command line ----------------------------------------------------------------------------


def test_python_m_bot_imagine_on_tiny_klein_writes_a_grid(tmp_path: Path, model_cache_dir: Path) -> None:
    env = {
        **{key: value for key, value in os.environ.items() if key not in ("DISCORD_TOKEN", "SD_EXTRA_MODELS")},
        "PYTHONPATH": str(ROOT),
        "SD_MODEL": "builtin:tiny",
        "SD_EXTRA_MODELS": TINY_KLEIN_MODEL_ID,
        "MODEL_CACHE_DIR": str(model_cache_dir),
        "DEVICE": "cpu",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot",
            "imagine",
            "a red fox",
            "--model",
            TINY_KLEIN_MODEL_ID,
            "--out",
            "fox.png",
            "--seed",
            "7",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    with Image.open(tmp_path / "fox.png") as grid:
        assert grid.size == (128, 128)
        assert f'Model: "{TINY_KLEIN_MODEL_ID}"' in grid.text["parameters"]


# -- through Discord ---------------------------------------------------------------------------------


async def test_imagine_on_flow_models_through_discord_posts_grids_and_u1_upscales(
    fake_discord: FakeDiscord, world: GuildSetup, tmp_path: Path, flow_engine: DiffusionEngine
) -> None:
    settings = tiny_settings(
        tmp_path, discord_token="fake-bot-token", daily_credits=100, preview_interval_s=0.0, extra_models=FLOW_MODELS
    )
    async with running_bot(fake_discord, settings, flow_engine):
        for model in FLOW_MODELS:
            ix = await discord_imagine(fake_discord, world, prompt="a red fox", model=model, seed=4)
            # Less work than a default image of builtin:tiny (SD_MODEL) each, so the least a job costs.
            # (The status, publicly: the first answer may be a "thinking" while the model loads on a busy machine.)
            await ix.wait_for_message(lambda message: "Cost: 1 credit." in message.content, timeout=180)
            grid = await finished_grid(ix)
            image = grid.attachments[0].open_image()
            assert image.size == (128, 128) and f'Model: "{model}"' in image.text["parameters"]
            upscaled = await press_and_wait(fake_discord, grid, "U1", world)
            assert upscaled.attachments[0].open_image().size == (128, 128)  # one image, twice the side

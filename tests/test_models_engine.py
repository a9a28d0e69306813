"""The diffusion engine, run for real on the builtin tiny pipeline (CPU, 64 px)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.engine import DiffusionEngine, EngineConfig
from models.errors import GenerationInterrupted, GenerationOutOfMemory, InvalidBatch
from models.operations import planned_steps
from models.tiny import TINY_MODEL_ID
from models.types import BatchOutput, BatchSpec, GenerationBatch, ImageTask, ModelPreset, Operation, StepProgress
from tests.helpers import pixels
from tests.recipes import a_spec

STEPS = 4


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> DiffusionEngine:
    cache = tmp_path_factory.getbasetemp() / "models-cache"
    engine = DiffusionEngine(EngineConfig(device="cpu", cache_dir=cache))
    engine.load(TINY_MODEL_ID)
    return engine


def spec(
    operation: Operation = Operation.TXT2IMG,
    size: int = 64,
    steps: int = STEPS,
    strength: float = 0.0,
    scheduler: str = "EulerAncestralDiscreteScheduler",
) -> BatchSpec:
    return a_spec(operation=operation, width=size, height=size, steps=steps, scheduler=scheduler, strength=strength)


def max_difference(first: Image.Image, second: Image.Image) -> int:
    return int(np.abs(pixels(first) - pixels(second)).max())


def txt2img(engine: DiffusionEngine, *tasks: ImageTask, **kwargs: object) -> list[Image.Image]:
    return list(engine.run(GenerationBatch(spec(**kwargs), tuple(tasks))).images)  # type: ignore[arg-type]


def test_device_and_preset(engine: DiffusionEngine) -> None:
    preset = engine.load(TINY_MODEL_ID)
    assert engine.device == torch.device("cpu")
    assert (preset.family, preset.width, preset.height) == ("tiny", 64, 64)
    assert preset.max_prompt_tokens == 77
    assert preset.latent_rgb_factors is not None and len(preset.latent_rgb_factors) == 4


def test_four_images_are_rgb_64px_and_seeded(engine: DiffusionEngine) -> None:
    tasks = [ImageTask(f"a lighthouse in a storm, take {n}", "blurry", seed=100 + n) for n in range(4)]
    first = txt2img(engine, *tasks)
    again = txt2img(engine, *tasks)

    assert [(image.mode, image.size) for image in first] == [("RGB", (64, 64))] * 4
    for one, two in zip(first, again, strict=True):
        assert max_difference(one, two) == 0
    # Different seeds (and prompts) give different images.
    assert all(max_difference(first[0], other) > 10 for other in first[1:])


def test_same_image_alone_or_in_a_batch(engine: DiffusionEngine) -> None:
    target = ImageTask("a red fox in the snow", "text, watermark", seed=42)
    alone = txt2img(engine, target)[0]
    batch = txt2img(
        engine,
        ImageTask("a castle", "", seed=7),
        target,
        ImageTask("a bowl of fruit, oil painting, very long prompt " * 5, "ugly", seed=123456789),
    )
    # CPU matmuls may block differently for different batch sizes; allow 2 of 255.
    assert max_difference(alone, batch[1]) <= 2
    assert max_difference(alone, batch[0]) > 10


def test_a_run_returns_its_images_with_their_seeds(engine: DiffusionEngine) -> None:
    tasks = (ImageTask("a kite", "", seed=31), ImageTask("a kite", "", seed=7))
    output = engine.run(GenerationBatch(spec(), tasks))

    assert isinstance(output, BatchOutput)
    assert isinstance(output.images, tuple)
    assert [(image.mode, image.size) for image in output.images] == [("RGB", (64, 64))] * 2
    assert output.seeds == (31, 7)
    assert output.pipeline_calls == 1
    assert output.seconds > 0
    with pytest.raises(AttributeError):
        output.seeds = ()  # type: ignore[misc]  # frozen: the assignment is the point


def test_a_call_leaves_the_shared_pipeline_as_it_was(engine: DiffusionEngine) -> None:
    task = ImageTask("a quiet harbour", "", seed=5)
    euler = txt2img(engine, task)[0]
    dpm = txt2img(engine, task, scheduler="DPMSolverMultistepScheduler")[0]
    euler_again = txt2img(engine, task)[0]
    assert max_difference(euler, dpm) > 10
    assert max_difference(euler, euler_again) == 0


def test_variation_keeps_size_and_varies(engine: DiffusionEngine) -> None:
    source = txt2img(engine, ImageTask("a blue vase", "", seed=1))[0]
    tasks = tuple(ImageTask("a blue vase", "", seed=200 + n, init_image=source) for n in range(3))
    images = engine.run(GenerationBatch(spec(Operation.VARIATION, steps=STEPS, strength=0.75), tasks)).images

    assert [(image.mode, image.size) for image in images] == [("RGB", (64, 64))] * 3
    assert all(max_difference(image, source) > 10 for image in images)
    assert max_difference(images[0], images[1]) > 10
    assert max_difference(images[1], images[2]) > 10


def test_upscale_doubles_the_size(engine: DiffusionEngine) -> None:
    source = txt2img(engine, ImageTask("a green hill", "", seed=3))[0]
    task = ImageTask("a green hill", "", seed=3, init_image=source)
    upscaled = engine.run(GenerationBatch(spec(Operation.UPSCALE, size=128, steps=8, strength=0.3), (task,))).images
    assert [(image.mode, image.size) for image in upscaled] == [("RGB", (128, 128))]


def test_interrupt_after_the_first_step(engine: DiffusionEngine) -> None:
    seen: list[StepProgress] = []
    batch = GenerationBatch(
        spec(Operation.TXT2IMG, steps=50), tuple(ImageTask("a slow job", "", seed=n) for n in range(2))
    )
    started = time.monotonic()
    with pytest.raises(GenerationInterrupted):
        engine.run(batch, on_step=seen.append, should_interrupt=lambda: len(seen) >= 1)
    assert time.monotonic() - started < 5
    assert [(progress.step, progress.total, progress.first_task) for progress in seen] == [(1, 50, 0)]
    assert tuple(seen[0].latents.shape) == (2, 4, 8, 8)  # type: ignore[attr-defined]


def test_img2img_reports_the_steps_it_really_runs(engine: DiffusionEngine) -> None:
    source = txt2img(engine, ImageTask("a boat", "", seed=9))[0]
    variation = spec(Operation.VARIATION, steps=10, strength=0.5)
    seen: list[StepProgress] = []
    engine.run(GenerationBatch(variation, (ImageTask("a boat", "", 1, source),)), on_step=seen.append)
    assert planned_steps(variation) == 5
    assert [(progress.step, progress.total) for progress in seen] == [(n, 5) for n in range(1, 6)]


def test_out_of_memory_splits_the_batch_and_keeps_order(
    engine: DiffusionEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = tuple(ImageTask(f"portrait number {n}", "", seed=n) for n in range(5))
    expected = engine.run(GenerationBatch(spec(), tasks)).images

    real_call = engine._call_pipeline
    call_sizes: list[int] = []

    def fits_one_image(pipeline: object, arguments: dict[str, object]) -> list[Image.Image]:
        call_sizes.append(len(arguments["prompt"]))  # type: ignore[arg-type]
        if len(arguments["prompt"]) > 1:  # type: ignore[arg-type]
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_call(pipeline, arguments)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "_call_pipeline", fits_one_image)
    first_tasks: list[int] = []
    output = engine.run(
        GenerationBatch(spec(), tasks),
        on_step=lambda progress: first_tasks.append(progress.first_task),
    )

    assert len(output.images) == 5
    for image, reference in zip(output.images, expected, strict=True):
        assert max_difference(image, reference) <= 2
    assert output.seeds == (0, 1, 2, 3, 4)
    assert sorted(set(first_tasks)) == [0, 1, 2, 3, 4]
    assert call_sizes.count(1) == 5
    assert output.pipeline_calls == 5


def test_one_image_that_does_not_fit_raises(engine: DiffusionEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    def never_fits(pipeline: object, arguments: dict[str, object]) -> list[Image.Image]:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(engine, "_call_pipeline", never_fits)
    with pytest.raises(GenerationOutOfMemory) as raised:
        engine.run(GenerationBatch(spec(), tuple(ImageTask("x", "", seed=n) for n in range(4))))
    assert "64x64" in str(raised.value)
    assert str(raised.value).count(".") == 1


def test_prompt_token_count(engine: DiffusionEngine) -> None:
    limit = engine.load(TINY_MODEL_ID).max_prompt_tokens
    long_prompt = " ".join(["a very detailed painting of a lighthouse"] * 29)  # 203 words
    assert engine.count_prompt_tokens(TINY_MODEL_ID, long_prompt) > limit
    assert 2 < engine.count_prompt_tokens(TINY_MODEL_ID, "a cat") < limit


def test_latent_preview_of_real_latents(engine: DiffusionEngine) -> None:
    preset = engine.load(TINY_MODEL_ID)
    latents: list[torch.Tensor] = []
    engine.run(
        GenerationBatch(spec(steps=2), (ImageTask("a", "", 1), ImageTask("b", "", 2))),
        on_step=lambda progress: latents.append(progress.latents),  # type: ignore[arg-type]
    )
    preview = engine.latent_preview(latents[-1], 1, preset, max_side=96)
    assert preview.mode == "RGB"
    assert max(preview.size) == 96

    no_factors = ModelPreset(**{**_fields(preset), "latent_rgb_factors": None, "latent_rgb_bias": None})
    wide = torch.randn(1, 4, 8, 16)
    fallback = engine.latent_preview(wide, 0, no_factors, max_side=64)
    assert (fallback.mode, fallback.size) == ("RGB", (64, 32))
    assert int(np.asarray(fallback).std()) > 0


def test_invalid_batches_are_rejected(engine: DiffusionEngine) -> None:
    with pytest.raises(InvalidBatch, match="multiples of 8"):
        txt2img(engine, ImageTask("x", "", 1), size=60)
    with pytest.raises(InvalidBatch, match="not a scheduler"):
        txt2img(engine, ImageTask("x", "", 1), scheduler="NoSuchScheduler")
    with pytest.raises(InvalidBatch, match="source image"):
        engine.run(GenerationBatch(spec(Operation.VARIATION, strength=0.5), (ImageTask("x", "", 1),)))


def test_engine_config_defaults() -> None:
    config = EngineConfig()
    assert (config.device, config.cache_dir, config.compile) == ("auto", Path("data/models"), "off")


def _fields(preset: ModelPreset) -> dict[str, object]:
    return {name: getattr(preset, name) for name in preset.__slots__}  # type: ignore[attr-defined]

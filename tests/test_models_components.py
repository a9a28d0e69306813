"""Components beside the resident model, run for real on the CPU: a super-resolution net and a captioner
through ``DiffusionEngine.run``, the bounded cache they live in, and a ControlNet given to ``from_pipe``."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from PIL import Image

from models.components import ComponentCache, ComponentKey, ComponentKind
from models.engine import DiffusionEngine, EngineConfig
from models.errors import GenerationInterrupted, GenerationOutOfMemory, InvalidBatch, ModelUnavailable
from models.loading import load_pipeline
from models.operations import (
    PipelineOperation,
    call_arguments,
    pipeline_for_call,
    pipeline_operation_for,
    planned_steps,
)
from models.operations.base import no_extra_check
from models.tiny import TINY_MODEL_ID
from models.types import BatchSpec, GenerationBatch, ImageTask, ModelFamily, Operation

if TYPE_CHECKING:
    from models.pipeline import Pipeline

X2 = "tiny-x2"  # the nearest-neighbour x2 net's reference
CAPTIONER = "colour-words"


class TinySuperResolution(torch.nn.Module):
    """Real-ESRGAN's shape at toy scale: a convolution to 4x the channels, then PixelShuffle(2).

    Its weights make it an exact nearest-neighbour x2 enlargement (each of the four sub-pixels copies its
    pixel), so what comes out of the engine can be compared with Pillow's, byte for byte.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3 * 4, kernel_size=3, padding=1)
        self.shuffle = torch.nn.PixelShuffle(2)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.zero_()
            for channel in range(3):
                for subpixel in range(4):
                    self.conv.weight[channel * 4 + subpixel, channel, 1, 1] = 1.0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(images))


def colour_words(images: Sequence[Image.Image], tasks: Sequence[str]) -> list[str]:
    """A captioner at toy scale: names each image's strongest channel, whatever its task."""
    assert len(tasks) == len(images)
    names = ("red", "green", "blue")
    return [f"a mostly {names[int(np.asarray(image).reshape(-1, 3).mean(0).argmax())]} picture" for image in images]


class Loads:
    """Loaders that record what they were asked for, so a test sees every load the cache makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[ComponentKind, str]] = []

    def upscaler(self, reference: str, device: torch.device, dtype: torch.dtype) -> object:
        self.calls.append((ComponentKind.UPSCALER, reference))
        if not reference.startswith(X2):
            raise ModelUnavailable(f"No upscaler is called {reference}.")
        return TinySuperResolution().to(device=device, dtype=dtype)

    def captioner(self, reference: str, device: torch.device, dtype: torch.dtype) -> object:
        self.calls.append((ComponentKind.CAPTIONER, reference))
        return colour_words


def an_engine(cache_dir: Path, loads: Loads, *, component_cache: int = 2) -> DiffusionEngine:
    loaders = {ComponentKind.UPSCALER: loads.upscaler, ComponentKind.CAPTIONER: loads.captioner}
    config = EngineConfig(device="cpu", cache_dir=cache_dir, component_loaders=loaders, component_cache=component_cache)
    return DiffusionEngine(config)


def a_picture(width: int, height: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def a_batch(operation: Operation, reference: str, size: int, *sources: Image.Image) -> GenerationBatch:
    spec = BatchSpec(model=reference, operation=operation, width=size, height=size, steps=0, guidance=0.0, scheduler="")
    return GenerationBatch(
        spec, tuple(ImageTask("", "", seed=n, init_image=source) for n, source in enumerate(sources))
    )


def test_an_upscaler_net_doubles_each_source_without_the_diffusion_model(tmp_path: Path) -> None:
    loads = Loads()
    engine = an_engine(tmp_path, loads)
    sources = (a_picture(64, 64, 1), a_picture(64, 64, 2), a_picture(32, 32, 3))

    output = engine.run(a_batch(Operation.SUPER_RESOLUTION, X2, 128, *sources))

    # The net's nearest-neighbour weights give Pillow's nearest-neighbour x2, exactly; the 32 px source comes
    # out of the net at 64 px and is resized to the spec's 128.
    expected_64 = [source.resize((128, 128), Image.Resampling.NEAREST) for source in sources[:2]]
    expected_32 = sources[2].resize((64, 64), Image.Resampling.NEAREST).resize((128, 128), Image.Resampling.LANCZOS)
    assert [(image.mode, image.size) for image in output.images] == [("RGB", (128, 128))] * 3
    for image, expected in zip(output.images, [*expected_64, expected_32], strict=True):
        assert np.array_equal(np.asarray(image), np.asarray(expected))
    assert (output.texts, output.seeds, output.pipeline_calls) == ((), (0, 1, 2), 1)
    assert planned_steps(a_batch(Operation.SUPER_RESOLUTION, X2, 128, sources[0]).spec) == 0
    # Loaded once, beside no diffusion model: builtin:tiny was never built in the engine's cache folder.
    assert loads.calls == [(ComponentKind.UPSCALER, X2)]
    assert engine.resident_components() == (ComponentKey(ComponentKind.UPSCALER, X2),)
    assert list(tmp_path.iterdir()) == []


def test_an_upscale_to_a_size_the_net_does_not_make_is_resized_to_it(tmp_path: Path) -> None:
    source = a_picture(64, 64, 4)
    output = an_engine(tmp_path, Loads()).run(a_batch(Operation.SUPER_RESOLUTION, X2, 96, source))
    expected = source.resize((128, 128), Image.Resampling.NEAREST).resize((96, 96), Image.Resampling.LANCZOS)
    assert np.array_equal(np.asarray(output.images[0]), np.asarray(expected))


def test_a_captioner_returns_one_text_per_source_and_no_images(tmp_path: Path) -> None:
    loads = Loads()
    engine = an_engine(tmp_path, loads)
    red, blue = Image.new("RGB", (64, 64), (200, 30, 40)), Image.new("RGB", (48, 48), (10, 20, 230))

    output = engine.run(a_batch(Operation.CAPTION, CAPTIONER, 64, red, blue, red))

    assert output.texts == ("a mostly red picture", "a mostly blue picture", "a mostly red picture")
    assert output.images == ()
    assert output.seeds == (0, 1, 2)
    assert loads.calls == [(ComponentKind.CAPTIONER, CAPTIONER)]


def test_the_engine_keeps_at_most_its_bound_of_components(tmp_path: Path) -> None:
    assert EngineConfig().component_cache == 2
    loads = Loads()
    engine = an_engine(tmp_path, loads, component_cache=2)
    source = a_picture(32, 32, 5)
    for reference in (f"{X2}-a", f"{X2}-b", f"{X2}-a", f"{X2}-c", f"{X2}-b"):
        engine.run(a_batch(Operation.SUPER_RESOLUTION, reference, 64, source))
    engine.run(a_batch(Operation.CAPTION, CAPTIONER, 64, source))

    # a and b loaded; a used again; c evicts b (least recently used); b comes back in place of a; the captioner
    # in place of c.
    upscaler = ComponentKind.UPSCALER
    assert loads.calls == [
        (upscaler, f"{X2}-a"),
        (upscaler, f"{X2}-b"),
        (upscaler, f"{X2}-c"),
        (upscaler, f"{X2}-b"),
        (ComponentKind.CAPTIONER, CAPTIONER),
    ]
    assert engine.resident_components() == (
        ComponentKey(upscaler, f"{X2}-b"),
        ComponentKey(ComponentKind.CAPTIONER, CAPTIONER),
    )


def test_the_cache_drops_what_it_evicts_and_refuses_what_it_cannot_load() -> None:
    made: list[torch.nn.Module] = []

    def load(reference: str, device: torch.device, dtype: torch.dtype) -> object:
        made.append(torch.nn.Linear(2, 2).to(device=device, dtype=dtype))
        return made[-1]

    cache = ComponentCache({ComponentKind.UPSCALER: load}, 1, device=torch.device("cpu"), dtype=torch.float32)
    first_key, second_key = ComponentKey(ComponentKind.UPSCALER, "one"), ComponentKey(ComponentKind.UPSCALER, "two")
    first = weakref.ref(cache.get(first_key))
    made.clear()
    assert first() is not None
    assert cache.get(first_key) is first()  # resident: not loaded again
    assert len(made) == 0

    cache.get(second_key)
    assert first() is None  # evicted and gone: the cache held its last reference
    assert cache.resident() == (second_key,)

    with pytest.raises(ModelUnavailable, match="no captioner loader"):
        cache.get(ComponentKey(ComponentKind.CAPTIONER, "any"))
    assert cache.resident() == (second_key,)  # nothing given up for a kind it cannot load
    cache.clear()
    assert cache.resident() == ()
    with pytest.raises(ModelUnavailable, match="at least 1"):
        ComponentCache({}, 0, device=torch.device("cpu"), dtype=torch.float32)


def test_a_component_batch_out_of_memory_is_split_in_order(tmp_path: Path) -> None:
    class FitsOneImage(TinySuperResolution):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            if images.shape[0] > 1:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return super().forward(images)

    config = EngineConfig(
        device="cpu", cache_dir=tmp_path, component_loaders={ComponentKind.UPSCALER: lambda *_: FitsOneImage()}
    )
    engine = DiffusionEngine(config)
    sources = tuple(a_picture(32, 32, seed) for seed in range(3))

    output = engine.run(a_batch(Operation.SUPER_RESOLUTION, X2, 64, *sources))

    assert output.pipeline_calls == 3
    for image, source in zip(output.images, sources, strict=True):
        assert np.array_equal(np.asarray(image), np.asarray(source.resize((64, 64), Image.Resampling.NEAREST)))

    class FitsNothing(TinySuperResolution):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    config = EngineConfig(
        device="cpu", cache_dir=tmp_path, component_loaders={ComponentKind.UPSCALER: lambda *_: FitsNothing()}
    )
    with pytest.raises(GenerationOutOfMemory, match="64x64"):
        DiffusionEngine(config).run(a_batch(Operation.SUPER_RESOLUTION, X2, 64, *sources))


def test_component_batches_are_checked_and_can_be_cancelled(tmp_path: Path) -> None:
    loads = Loads()
    engine = an_engine(tmp_path, loads)
    without_source = GenerationBatch(a_batch(Operation.CAPTION, CAPTIONER, 64).spec, (ImageTask("", "", 1),))
    with pytest.raises(InvalidBatch, match="source image"):
        engine.run(without_source)
    with pytest.raises(GenerationInterrupted):
        engine.run(a_batch(Operation.SUPER_RESOLUTION, X2, 64, a_picture(32, 32, 0)), should_interrupt=lambda: True)
    with pytest.raises(ModelUnavailable, match="No upscaler"):
        engine.run(a_batch(Operation.SUPER_RESOLUTION, "esrgan-nowhere", 64, a_picture(32, 32, 0)))
    assert loads.calls == [(ComponentKind.UPSCALER, "esrgan-nowhere")]  # nothing loaded for the first two


CONTROLNET_TXT2IMG = PipelineOperation(
    name="controlnet",
    pipeline_classes={ModelFamily.TINY: "StableDiffusionControlNetPipeline"},
    planned_steps=lambda spec: spec.steps,
    check=no_extra_check,
    arguments=lambda spec, tasks: {"width": spec.width, "height": spec.height},
)


def test_from_pipe_takes_a_controlnet_that_steers_the_shared_model(model_cache_dir: Path) -> None:
    from diffusers import ControlNetModel

    base = load_pipeline(TINY_MODEL_ID, device=torch.device("cpu"), dtype=torch.float32, cache_dir=model_cache_dir)
    spec = BatchSpec(TINY_MODEL_ID, Operation.TXT2IMG, 64, 64, 2, 7.0, "EulerAncestralDiscreteScheduler")
    control = [a_picture(64, 64, 9)]

    def first_image(pipeline: Pipeline, **extra: object) -> np.ndarray:
        generators = [torch.Generator().manual_seed(3)]
        arguments = call_arguments(
            spec, (ImageTask("a lighthouse", "", 3),), generators, lambda *call: call[-1], ModelFamily.TINY
        )
        return np.asarray(pipeline(**arguments, **extra).images[0], dtype=np.int16)

    def with_control(controlnet: object) -> Pipeline:
        pipeline = pipeline_for_call(
            CONTROLNET_TXT2IMG, base, ModelFamily.TINY, spec, components={"controlnet": controlnet}
        )
        assert type(pipeline).__name__ == "StableDiffusionControlNetPipeline"
        assert pipeline.controlnet is controlnet  # type: ignore[attr-defined]  # the object given, not a copy
        assert pipeline.unet is base.unet  # the resident model's weights, shared
        return pipeline

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        controlnet = ControlNetModel.from_unet(base.unet, conditioning_embedding_out_channels=(8, 8, 16, 16))
    plain = first_image(pipeline_for_call(pipeline_operation_for(Operation.TXT2IMG), base, ModelFamily.TINY, spec))

    # A ControlNet made from the UNet adds zeros (its output convolutions start at zero): the same image.
    assert np.abs(first_image(with_control(controlnet), image=control) - plain).max() <= 1
    # Trained (here: disturbed) output convolutions steer the same seed elsewhere.
    with torch.no_grad():
        for convolution in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            convolution.weight.normal_(std=0.5)
    assert np.abs(first_image(with_control(controlnet), image=control) - plain).max() > 10

    with pytest.raises(ValueError, match="scheduler"):
        pipeline_for_call(CONTROLNET_TXT2IMG, base, ModelFamily.TINY, spec, components={"scheduler": None})

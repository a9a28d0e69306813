"""Upscalers through spandrel, for real on the CPU: tiny random-weight ESRGAN-family nets built here, saved as
safetensors, recognised from their weights alone, run whole and in tiles, and pickles refused unopened."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from spandrel.architectures.Compact import Compact
from spandrel.architectures.ESRGAN import ESRGAN

from models.components import ComponentKind
from models.engine import DiffusionEngine, EngineConfig
from models.errors import ModelUnavailable, UnsafeCheckpoint
from models.operations import super_resolution
from models.types import BatchSpec, GenerationBatch, ImageTask, Operation
from models.upscalers import MIN_TILE, TILE_OVERLAP, TiledUpscaler, tile_spans, upscaler_loader

CPU = torch.device("cpu")

#: Tiled against untiled, on the float output in [0, 1]. Every kept pixel of a tile has TILE_OVERLAP // 2 = 16
#: input pixels of context beyond its seam, and these nets' receptive fields reach 3 (Compact with 2 body
#: convolutions) and about 18 pixels (one RRDB block, whose far reach is scaled by its 0.2 residuals), so the
#: only differences left are float32 rounding: convolutions over inputs of different sizes add their terms in
#: another order. Measured: at most 1.2e-7; the tolerance leaves 80 times that.
FLOAT_TOLERANCE = 1e-5
#: The same comparison as 8-bit pictures: a value within float rounding of a step between two levels can round
#: either way, so a pixel may differ by one level (measured: 1 level on a few pixels); never by two.
PIXEL_TOLERANCE = 1


def a_compact(path: Path, scale: int, *, channels: int = 3, convolutions: int = 2) -> Path:
    """Real-ESRGAN's compact net (SRVGGNetCompact) at toy width, random weights, saved as safetensors."""
    torch.manual_seed(scale)
    net = Compact(num_in_ch=channels, num_out_ch=channels, num_feat=8, num_conv=convolutions, upscale=scale)
    save_file(net.state_dict(), path)
    return path


def an_esrgan(path: Path, scale: int) -> Path:
    """ESRGAN's RRDB net with one block of 8 filters (the real one has 23 of 64), random weights."""
    torch.manual_seed(scale)
    net = ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=scale)
    save_file({name: tensor.contiguous() for name, tensor in net.state_dict().items()}, path)
    return path


def a_picture(width: int, height: int, seed: int) -> Image.Image:
    """Smooth colour fields with noise on top, so an upscale has both edges and gradients to keep."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8), "RGB")
    smooth = np.asarray(coarse.resize((width, height), Image.Resampling.BILINEAR), dtype=np.int16)
    noisy = smooth + rng.integers(-20, 21, smooth.shape)
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8), "RGB")


def a_spec(reference: Path, width: int, height: int) -> BatchSpec:
    return BatchSpec(
        model=str(reference),
        operation=Operation.SUPER_RESOLUTION,
        width=width,
        height=height,
        steps=0,
        guidance=0.0,
        scheduler="",
    )


def tasks_for(*sources: Image.Image) -> tuple[ImageTask, ...]:
    return tuple(ImageTask("", "", seed=n, init_image=source) for n, source in enumerate(sources))


def one_sentence(message: str) -> bool:
    return message.endswith(".") and ". " not in message and "\n" not in message


# Recognised from the weights


@pytest.mark.parametrize(
    ("make", "scale", "architecture"),
    [(a_compact, 2, "RealESRGAN Compact"), (a_compact, 4, "RealESRGAN Compact"), (an_esrgan, 4, "ESRGAN")],
)
def test_an_esrgan_family_net_saved_as_safetensors_is_recognised_and_upscales(
    tmp_path: Path, make, scale: int, architecture: str
) -> None:
    upscaler = upscaler_loader(0)(str(make(tmp_path / "net.safetensors", scale)), CPU, torch.float32)

    assert isinstance(upscaler, TiledUpscaler)
    assert (upscaler.architecture, upscaler.scale, upscaler.tile) == (architecture, scale, 0)
    assert not upscaler.net.training
    assert all(not parameter.requires_grad for parameter in upscaler.parameters())
    out = upscaler(torch.rand(2, 3, 24, 40))
    assert out.shape == (2, 3, 24 * scale, 40 * scale)
    assert out.dtype == torch.float32
    assert 0.0 <= out.min().item() <= out.max().item() <= 1.0


def test_a_precision_the_architecture_lacks_falls_back_to_float32(tmp_path: Path) -> None:
    """Compact supports bfloat16 and runs in it; a descriptor without half support would get float32."""
    net = a_compact(tmp_path / "net.safetensors", 2)

    in_bfloat16 = upscaler_loader(0)(str(net), CPU, torch.bfloat16)
    in_float64 = upscaler_loader(0)(str(net), CPU, torch.float64)

    assert next(in_bfloat16.parameters()).dtype == torch.bfloat16
    assert next(in_float64.parameters()).dtype == torch.float32


# Sizes through the super-resolution operation


@pytest.mark.parametrize(
    ("scale", "factor"),
    [(2, 2), (4, 4), (4, 2), (2, 3)],
    ids=["x2 net, x2", "x4 net, x4", "x4 net serving x2", "x2 net serving x3"],
)
def test_the_spec_size_is_honoured_whatever_the_net_scale(tmp_path: Path, scale: int, factor: int) -> None:
    reference = a_compact(tmp_path / "net.safetensors", scale)
    upscaler = upscaler_loader(0)(str(reference), CPU, torch.float32)
    sources = (a_picture(48, 32, seed=1), a_picture(48, 32, seed=2))

    outputs = super_resolution.run(upscaler, a_spec(reference, 48 * factor, 32 * factor), tasks_for(*sources))

    assert [image.size for image in outputs.images] == [(48 * factor, 32 * factor)] * 2
    assert [image.mode for image in outputs.images] == ["RGB", "RGB"]
    # The random net adds little to its nearest-neighbour base: each output still looks like its own source.
    for output, source in zip(outputs.images, sources, strict=True):
        mine = np.asarray(output.resize(source.size, Image.Resampling.BOX), dtype=np.float32)
        other = sources[1] if source is sources[0] else sources[0]
        assert np.abs(mine - np.asarray(source)).mean() < np.abs(mine - np.asarray(other)).mean()


def test_the_engine_loads_an_upscaler_file_through_its_cache(tmp_path: Path) -> None:
    reference = a_compact(tmp_path / "net.safetensors", 4)
    config = EngineConfig(
        device="cpu", cache_dir=tmp_path / "cache", component_loaders={ComponentKind.UPSCALER: upscaler_loader(64)}
    )
    engine = DiffusionEngine(config)
    spec = a_spec(reference, 192, 128)

    output = engine.run(GenerationBatch(spec, tasks_for(a_picture(96, 64, seed=3))))

    assert [image.size for image in output.images] == [(192, 128)]


# Tiles


@pytest.mark.parametrize("length", [64, 65, 100, 150, 200, 257, 1000])
@pytest.mark.parametrize("tile", [64, 96, 256])
def test_tiles_cover_the_picture_once_with_their_context(length: int, tile: int) -> None:
    spans = tile_spans(length, tile, TILE_OVERLAP)

    kept = [index for span in spans for index in range(span.keep_start, span.keep_stop)]
    assert kept == list(range(length))  # each pixel is kept exactly once, in order
    for span in spans:
        assert span.stop - span.start == min(tile, length)  # the net never sees a sliver
        assert 0 <= span.start and span.stop <= length
        # At least half the overlap of context beyond every inner seam.
        assert span.keep_start == 0 or span.keep_start - span.start >= TILE_OVERLAP // 2
        assert span.keep_stop == length or span.stop - span.keep_stop >= TILE_OVERLAP // 2


@pytest.mark.parametrize(("make", "scale"), [(a_compact, 4), (an_esrgan, 2)], ids=["compact x4", "esrgan x2"])
def test_tiled_equals_untiled_within_the_stated_tolerance(tmp_path: Path, make, scale: int) -> None:
    reference = str(make(tmp_path / "net.safetensors", scale))
    whole = upscaler_loader(0)(reference, CPU, torch.float32)
    tiled = upscaler_loader(MIN_TILE)(reference, CPU, torch.float32)
    # 120 x 160 in 64-pixel tiles: 3 x 4 tiles, the last of each row and column overlapping more than 32.
    batch = torch.from_numpy(np.asarray(a_picture(160, 120, seed=4), dtype=np.float32) / 255.0).permute(2, 0, 1)[None]

    whole_output, tiled_output = whole(batch), tiled(batch)

    assert whole_output.shape == tiled_output.shape == (1, 3, 120 * scale, 160 * scale)
    difference = (whole_output - tiled_output).abs().max().item()
    # As 8-bit pictures, the way the super-resolution operation makes them.
    levels = ((whole_output * 255).round() - (tiled_output * 255).round()).abs().max().item()
    assert difference <= FLOAT_TOLERANCE
    assert levels <= PIXEL_TOLERANCE


def test_a_large_picture_runs_in_tiles_of_bounded_size(tmp_path: Path) -> None:
    """1024 px to 4096 px with a x4 net: the net never sees more than a 256-pixel tile at once."""
    reference = a_compact(tmp_path / "net.safetensors", 4)
    upscaler = upscaler_loader(256)(str(reference), CPU, torch.float32)
    seen: list[tuple[int, ...]] = []
    upscaler.net.register_forward_pre_hook(lambda _module, inputs: seen.append(tuple(inputs[0].shape)))
    source = a_picture(1024, 1024, seed=5)

    started = time.perf_counter()
    [output] = super_resolution.run(upscaler, a_spec(reference, 4096, 4096), tasks_for(source)).images
    elapsed = time.perf_counter() - started

    assert output.size == (4096, 4096)
    assert len(seen) == 25  # 5 x 5 tiles: starts 0, 224, 448, 672 and 768 on each axis
    assert max(max(shape[2:]) for shape in seen) == 256
    assert elapsed < 20.0
    # A corner and the middle, against a plain enlargement: the tiled output is the picture, not a mosaic.
    small = np.asarray(output.resize((1024, 1024), Image.Resampling.BOX), dtype=np.float32)
    assert np.abs(small - np.asarray(source, dtype=np.float32)).mean() < 20


@pytest.mark.parametrize("tile", [1, 32, MIN_TILE - 1, -1])
def test_a_tile_too_small_to_keep_anything_is_refused(tile: int) -> None:
    with pytest.raises(ModelUnavailable) as refused:
        upscaler_loader(tile)

    assert str(refused.value) == (
        f"The upscaler's tile must be 0 (the whole picture at once) or at least {MIN_TILE} pixels, not {tile}."
    )


# Refusals


def assert_refused_as_pickle(path: Path) -> None:
    with pytest.raises(UnsafeCheckpoint) as refused:
        upscaler_loader(0)(str(path), CPU, torch.float32)
    message = str(refused.value)
    assert one_sentence(message)
    assert message.startswith(f"{path.name} is a pickle checkpoint, which can run code when it is loaded")
    assert "load it once in a trusted Python with spandrel and save its state_dict with safetensors" in message


def test_a_pickle_checkpoint_is_refused_by_its_name_and_by_its_bytes(tmp_path: Path) -> None:
    net = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2)
    torch.save(net.state_dict(), tmp_path / "net.pth")
    (tmp_path / "renamed.safetensors").write_bytes((tmp_path / "net.pth").read_bytes())  # torch.save's zip
    (tmp_path / "bare.safetensors").write_bytes(pickle.dumps({"body.0.weight": [0.0]}, protocol=4))
    (tmp_path / "net.ckpt").write_bytes(b"")  # refused by name, before it is opened

    for path in ("net.pth", "renamed.safetensors", "bare.safetensors", "net.ckpt"):
        assert_refused_as_pickle(tmp_path / path)


def refusal(path: Path) -> str:
    with pytest.raises(ModelUnavailable) as refused:
        upscaler_loader(0)(str(path), CPU, torch.float32)
    assert not isinstance(refused.value, UnsafeCheckpoint)
    message = str(refused.value)
    assert one_sentence(message), message
    return message


def test_what_is_not_an_upscaler_is_refused_with_one_sentence(tmp_path: Path) -> None:
    save_file({"weight": torch.zeros(4, 4), "bias": torch.zeros(4)}, tmp_path / "tensors.safetensors")
    (tmp_path / "damaged.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    a_compact(tmp_path / "grey.safetensors", 2, channels=1)
    (tmp_path / "net.onnx").write_bytes(b"\x08\x07")

    assert refusal(tmp_path / "tensors.safetensors") == (
        "tensors.safetensors is not an upscaler that spandrel recognises (it knows ESRGAN, Real-ESRGAN, SwinIR, "
        "HAT, SPAN and more), so check that it holds a super-resolution model's weights."
    )
    assert refusal(tmp_path / "damaged.safetensors") == (
        "damaged.safetensors is not a readable safetensors file, so it may be damaged or only partly downloaded."
    )
    assert refusal(tmp_path / "grey.safetensors") == (
        "grey.safetensors holds a RealESRGAN Compact model for SR of 1-channel images, "
        "not a super-resolution model of RGB pictures."
    )
    assert (
        refusal(tmp_path / "net.onnx") == "The upscaler net.onnx must be a .safetensors file, the only kind read here."
    )
    assert refusal(tmp_path / "missing.safetensors").startswith(
        f"The upscaler {tmp_path / 'missing.safetensors'} does not exist, so download a .safetensors"
    )

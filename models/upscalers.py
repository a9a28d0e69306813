"""Super-resolution nets (ESRGAN, Real-ESRGAN, SwinIR, HAT, SPAN, ...) loaded through spandrel, run tile by tile.

An ``UPSCALER`` component (``models.components``) is a ``torch.nn.Module`` from (N, 3, H, W) RGB in [0, 1] to
(N, 3, sH, sW) in [0, 1]. spandrel (MIT) recognises the architecture and its hyper-parameters from the weights
alone, so an owner names a file and nothing else. Only ``.safetensors`` files are read: a pickle checkpoint
(``.pth``, ``.pt``, ``.ckpt``, ``.bin``, or any file that starts like one) can run code when it is loaded, so it
is refused before it is opened, with the one step that converts it.

A large picture does not have to fit through the net at once: with ``tile`` > 0 the net sees overlapping
``tile``-pixel squares, and each output pixel is taken from the tile in which it lies farthest from an edge
(crop-of-centre: the seam between two tiles runs down the middle of their overlap, and each side keeps its own
half). Every kept pixel therefore had at least ``TILE_OVERLAP // 2`` input pixels of context on each side, so
a net whose receptive field reaches no farther gives the untiled result up to float rounding, and a deeper one
(RRDB's reaches hundreds of pixels, with weights that fade fast) differs by a small amount at the seams, never
by a visible step. Memory then grows with the tile, not the picture; only the output itself is full size.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch

from models.errors import ModelUnavailable, UnsafeCheckpoint

if TYPE_CHECKING:
    from models.components import ComponentLoader

#: Input pixels two neighbouring tiles share at least: each keeps half, so every kept pixel has 16 of context.
TILE_OVERLAP = 32
#: The smallest tile worth running: below twice the overlap a tile would keep less than it recomputes.
MIN_TILE = 2 * TILE_OVERLAP
#: Suffixes of pickle checkpoints, refused by name before the file is read.
PICKLE_SUFFIXES = frozenset({".pth", ".pt", ".ckpt", ".bin", ".pkl", ".pickle"})

_CONVERT = "load it once in a trusted Python with spandrel and save its state_dict with safetensors.torch.save_file"


class _Architecture(Protocol):
    @property
    def name(self) -> str: ...


class ImageModel(Protocol):
    """The part of spandrel's ``ImageModelDescriptor`` used here (spandrel ships no types)."""

    @property
    def model(self) -> torch.nn.Module: ...
    @property
    def architecture(self) -> _Architecture: ...
    @property
    def purpose(self) -> str: ...
    @property
    def scale(self) -> int: ...
    @property
    def input_channels(self) -> int: ...
    @property
    def output_channels(self) -> int: ...
    @property
    def supports_half(self) -> bool: ...
    @property
    def supports_bfloat16(self) -> bool: ...

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in [0, 1] to (N, C, sH, sW) in [0, 1], padded to the net's size requirements and back."""
        ...


def upscaler_loader(tile: int) -> ComponentLoader:
    """The ``UPSCALER`` loader for ``EngineConfig.component_loaders``: nets that run ``tile``-pixel tiles.

    ``tile`` 0 runs every picture whole; otherwise it must be at least ``MIN_TILE``.
    """
    if tile != 0 and tile < MIN_TILE:
        raise ModelUnavailable(
            f"The upscaler's tile must be 0 (the whole picture at once) or at least {MIN_TILE} pixels, not {tile}."
        )
    return functools.partial(load_upscaler, tile=tile)


def load_upscaler(reference: str, device: torch.device, dtype: torch.dtype, *, tile: int = 0) -> TiledUpscaler:
    """The super-resolution net in the ``.safetensors`` file ``reference``, on ``device``, ready to run.

    It runs at ``dtype`` where its architecture supports that precision, and in float32 otherwise (some nets
    overflow in float16).
    """
    import spandrel  # type: ignore[import-untyped]  # spandrel ships no types: ImageModel is the part used

    # 1. Refuse what must not be opened, and what is not there.
    path = Path(reference)
    _check_file(path)
    # 2. Read the weights: a safetensors file holds tensors and nothing that runs.
    state_dict = _read_safetensors(path)
    # 3. Recognise the architecture from the weights.
    try:
        descriptor = spandrel.ModelLoader(device="cpu").load_from_state_dict(
            spandrel.canonicalize_state_dict(state_dict)
        )
    except spandrel.UnsupportedModelError as error:
        raise ModelUnavailable(
            f"{path.name} is not an upscaler that spandrel recognises (it knows ESRGAN, Real-ESRGAN, SwinIR, HAT, "
            "SPAN and more), so check that it holds a super-resolution model's weights."
        ) from error
    except (KeyError, ValueError, RuntimeError, AssertionError) as error:
        raise ModelUnavailable(
            f"{path.name} looks like an upscaler to spandrel but its weights do not fit any variant it knows, "
            "so the file may be damaged or of a newer architecture."
        ) from error
    # 4. Only a net from RGB pictures to larger (or equal) RGB pictures serves an upscale.
    if not (
        isinstance(descriptor, spandrel.ImageModelDescriptor)
        and descriptor.scale >= 1
        and descriptor.input_channels == 3
        and descriptor.output_channels == 3
    ):
        raise ModelUnavailable(
            f"{path.name} holds a {descriptor.architecture.name} model for {descriptor.purpose} of "
            f"{descriptor.input_channels}-channel images, not a super-resolution model of RGB pictures."
        )
    # 5. Onto the device, at a precision the architecture supports, for inference only.
    supported = dtype == torch.float32 or (
        (dtype == torch.float16 and descriptor.supports_half)
        or (dtype == torch.bfloat16 and descriptor.supports_bfloat16)
    )
    descriptor.to(device=device, dtype=dtype if supported else torch.float32)
    descriptor.model.eval().requires_grad_(False)
    return TiledUpscaler(descriptor, tile=tile)


class TiledUpscaler(torch.nn.Module):
    """A spandrel image model as an ``UPSCALER`` component, run whole or in overlapping tiles.

    ``scale`` is the net's factor, ``tile`` the side of the squares it sees (0: the whole picture),
    ``overlap`` the input pixels two tiles share at least, ``architecture`` spandrel's name for the net.
    """

    def __init__(self, descriptor: ImageModel, *, tile: int, overlap: int = TILE_OVERLAP) -> None:
        super().__init__()
        self.net = descriptor.model  # a submodule, so ``parameters()`` and ``to()`` reach the weights
        self._descriptor = descriptor  # pads to the net's size requirements and clamps to [0, 1]
        self.scale: int = descriptor.scale
        self.tile = tile
        self.overlap = overlap
        self.architecture: str = descriptor.architecture.name

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            _, _, height, width = batch.shape
            if self.tile <= 0 or (height <= self.tile and width <= self.tile):
                return self._descriptor(batch)
            return self._tiled(batch)

    def _tiled(self, batch: torch.Tensor) -> torch.Tensor:
        """Each tile through the net, its kept part written into the full-size output."""
        count, _, height, width = batch.shape
        scale = self.scale
        out = batch.new_empty((count, 3, height * scale, width * scale))
        rows = tile_spans(height, self.tile, self.overlap)
        columns = tile_spans(width, self.tile, self.overlap)
        for row in rows:
            for column in columns:
                result = self._descriptor(batch[:, :, row.start : row.stop, column.start : column.stop])
                out[:, :, row.kept_slice(scale), column.kept_slice(scale)] = result[
                    :, :, row.kept_in_tile(scale), column.kept_in_tile(scale)
                ]
        return out


@dataclass(frozen=True, slots=True)
class TileSpan:
    """One tile along one axis: it reads input pixels [start, stop) and keeps [keep_start, keep_stop) of them."""

    start: int
    stop: int
    keep_start: int
    keep_stop: int

    def kept_slice(self, scale: int) -> slice:
        """Where the kept pixels go in the output."""
        return slice(self.keep_start * scale, self.keep_stop * scale)

    def kept_in_tile(self, scale: int) -> slice:
        """Where the kept pixels are in this tile's output."""
        return slice((self.keep_start - self.start) * scale, (self.keep_stop - self.start) * scale)


def tile_spans(length: int, tile: int, overlap: int) -> tuple[TileSpan, ...]:
    """Tiles of ``tile`` pixels over ``length``, neighbours sharing at least ``overlap``; the kept parts tile it.

    Every tile is full size (the last one starts at ``length - tile``, sharing more with the one before), so
    the net never sees a sliver; the seam between two tiles is the middle of what they share.
    """
    if length <= tile:
        return (TileSpan(0, length, 0, length),)
    starts = [*range(0, length - tile, tile - overlap), length - tile]
    seams = [(left + tile + right) // 2 for left, right in itertools.pairwise(starts)]
    bounds = [0, *seams, length]
    return tuple(TileSpan(start, start + tile, bounds[index], bounds[index + 1]) for index, start in enumerate(starts))


def _check_file(path: Path) -> None:
    """Refuse a pickle by its name or its first bytes, and a file that is not there, each with one sentence."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise UnsafeCheckpoint(_pickle_refusal(path))
    if not path.is_file():
        raise ModelUnavailable(
            f"The upscaler {path} does not exist, so download a .safetensors super-resolution model "
            "(Real-ESRGAN's RealESRGAN_x4plus, for one) and name its path."
        )
    with path.open("rb") as file:
        head = file.read(2)
    # torch.save writes a zip archive ("PK"); a bare pickle starts with PROTO (0x80) and its protocol number.
    if head == b"PK" or (len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5):
        raise UnsafeCheckpoint(_pickle_refusal(path))
    if path.suffix.lower() != ".safetensors":
        raise ModelUnavailable(f"The upscaler {path.name} must be a .safetensors file, the only kind read here.")


def _pickle_refusal(path: Path) -> str:
    return (
        f"{path.name} is a pickle checkpoint, which can run code when it is loaded, so it is refused: "
        f"{_CONVERT}, then name the .safetensors file instead."
    )


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelUnavailable(
            f"{path.name} is not a readable safetensors file, so it may be damaged or only partly downloaded."
        ) from error

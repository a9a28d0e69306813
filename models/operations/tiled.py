"""A redraw too large for one pipeline call, made in overlapping tiles and blended back (Upscale (Creative)).

An upscale past the bot's largest side (2048 px) cannot be redrawn in one call: the denoiser's attention grows
with the square of the pixels, and its memory with them. So the enlarged image is cut into tiles of
``BatchSpec.redraw_tile`` pixels that overlap by an eighth of a tile, each tile is redrawn by img2img as a task
of its own (seeded from the image's seed and its place, so the same image gives the same tiles), and the tiles
are blended back with linear ramps across each overlap: every pixel is a weighted mean of the tiles that drew it,
so no seam is left where two tiles' noise differed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

#: The share of a tile its neighbours overlap.
OVERLAP_SHARE = 8


@dataclass(frozen=True, slots=True)
class Tile:
    """Where one tile lies in the image: ``left, top`` and its size."""

    left: int
    top: int
    width: int
    height: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        return (self.left, self.top, self.left + self.width, self.top + self.height)


def starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where tiles of ``tile`` start along ``length``, neighbours sharing at least ``overlap``; the last ends it."""
    if length <= tile:
        return [0]
    found = list(range(0, length - tile, tile - overlap))
    return [*found, length - tile]


def tiles(width: int, height: int, tile: int) -> list[Tile]:
    """The tiles covering a ``width`` x ``height`` image, row by row."""
    overlap = max(1, tile // OVERLAP_SHARE)
    across, down = min(tile, width), min(tile, height)
    return [
        Tile(left, top, across, down)
        for top in starts(height, down, overlap)
        for left in starts(width, across, overlap)
    ]


def blend(drawn: Sequence[Image.Image], placed: Sequence[Tile], width: int, height: int) -> Image.Image:
    """The tiles ``drawn`` (at ``placed``) as one image: a linear ramp across every overlap, weights summing to one."""
    total = np.zeros((height, width, 3), dtype=np.float64)
    weights = np.zeros((height, width, 1), dtype=np.float64)
    for image, tile in zip(drawn, placed, strict=True):
        ramp = _ramp(tile, width, height)
        pixels = np.asarray(image.convert("RGB").resize((tile.width, tile.height)), dtype=np.float64)
        total[tile.top : tile.top + tile.height, tile.left : tile.left + tile.width] += pixels * ramp
        weights[tile.top : tile.top + tile.height, tile.left : tile.left + tile.width] += ramp
    return Image.fromarray(np.rint(total / np.maximum(weights, 1e-9)).clip(0, 255).astype(np.uint8), "RGB")


def _ramp(tile: Tile, width: int, height: int) -> np.ndarray:
    """A tile's weights: 1 inside, falling linearly to near 0 over the overlap on each side that has a neighbour."""
    overlap = max(1, max(tile.width, tile.height) // OVERLAP_SHARE)

    def axis(size: int, start: int, length: int) -> np.ndarray:
        weight = np.ones(size)
        fall = np.linspace(1.0 / (overlap + 1), 1.0, overlap, endpoint=False)
        if start > 0:  # a neighbour before
            weight[: min(overlap, size)] = fall[: min(overlap, size)]
        if start + size < length:  # a neighbour after
            weight[-min(overlap, size) :] = np.minimum(weight[-min(overlap, size) :], fall[::-1][-min(overlap, size) :])
        return weight

    across = axis(tile.width, tile.left, width)
    down = axis(tile.height, tile.top, height)
    return (down[:, None] * across[None, :])[..., None]

"""The sizes a model draws at: its native pixel count at each aspect ratio ``--ar`` offers.

Both halves need them: the bot sizes a job (``bot.jobs.requests``), a worker compiles its fast
path for every one of them (``models.fastpath``'s buckets).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from models.families import FAMILIES
from models.types import ModelFamily

if TYPE_CHECKING:
    from models.types import ModelPreset

#: Each aspect ratio by the name users type, as width to height.
ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "1:1": (1, 1),
    "3:2": (3, 2),
    "2:3": (2, 3),
    "16:9": (16, 9),
    "9:16": (9, 16),
}
SIZE_MULTIPLE = 8  # latent space is 1/8 of the image in every Stable Diffusion VAE


def size_multiple(preset: ModelPreset) -> int:
    """What the model's sides are a multiple of: 8 for Stable Diffusion, 16 for the flow transformers."""
    try:
        return FAMILIES[ModelFamily(preset.family)].size_multiple
    except ValueError:  # a family this side does not know yet (a newer worker's): Stable Diffusion's
        return SIZE_MULTIPLE


def size_for_aspect(preset: ModelPreset, aspect: str) -> tuple[int, int]:
    """Width and height with about the model's native pixel count, rounded to the latent grid.

    ``aspect`` is one of ``ASPECT_RATIOS`` (a ``KeyError`` otherwise: callers check what users typed first).
    """
    ratio_w, ratio_h = ASPECT_RATIOS[aspect]
    area = preset.width * preset.height
    width = math.sqrt(area * ratio_w / ratio_h)
    height = area / width
    multiple = size_multiple(preset)

    def snap(side: float) -> int:
        return max(multiple, round(side / multiple) * multiple)

    return snap(width), snap(height)


def aspect_sizes(preset: ModelPreset) -> tuple[tuple[int, int], ...]:
    """Every size ``--ar`` can ask of this model, 1:1 first: the shapes worth compiling."""
    return tuple(size_for_aspect(preset, aspect) for aspect in ASPECT_RATIOS)

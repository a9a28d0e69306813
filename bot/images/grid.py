"""Images laid out as the grid users see: 1 alone, 2 side by side, 3-4 in 2x2."""

from __future__ import annotations

import math
from collections.abc import Sequence

from PIL import Image

GRID_COLUMNS = 2


def compose_grid(images: Sequence[Image.Image]) -> Image.Image:
    """Lay 1-4 images of one size out as a grid: 1 alone, 2 side by side, 3-4 in 2x2.

    Cells keep their place (image n is always at the same spot) so U<n>/V<n> match
    what users see; an empty fourth cell stays black.
    """
    if not images:
        raise ValueError("a grid needs at least one image")
    width, height = images[0].size
    columns = min(GRID_COLUMNS, len(images))
    rows = math.ceil(len(images) / columns)
    grid = Image.new("RGB", (columns * width, rows * height))
    for index, image in enumerate(images):
        cell = image if image.size == (width, height) else image.resize((width, height))
        grid.paste(cell.convert("RGB"), ((index % columns) * width, (index // columns) * height))
    return grid

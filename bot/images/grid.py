"""Images laid out as the grid users see: 1 alone, 2 side by side, 3-4 in 2x2; and cut out of it again."""

from __future__ import annotations

import math
from collections.abc import Sequence

from PIL import Image

GRID_COLUMNS = 2


def _layout(count: int) -> tuple[int, int]:
    """Columns and rows of a grid of ``count`` images."""
    if count < 1:
        raise ValueError("a grid needs at least one image")
    columns = min(GRID_COLUMNS, count)
    return columns, math.ceil(count / columns)


def compose_grid(images: Sequence[Image.Image]) -> Image.Image:
    """Lay 1-4 images of one size out as a grid: 1 alone, 2 side by side, 3-4 in 2x2.

    Cells keep their place (image n is always at the same spot) so U<n>/V<n> match
    what users see; an empty fourth cell stays black.
    """
    columns, rows = _layout(len(images))
    width, height = images[0].size
    grid = Image.new("RGB", (columns * width, rows * height))
    for index, image in enumerate(images):
        cell = image if image.size == (width, height) else image.resize((width, height))
        grid.paste(cell.convert("RGB"), ((index % columns) * width, (index // columns) * height))
    return grid


def grid_cells(grid: Image.Image, count: int) -> list[Image.Image]:
    """The ``count`` images ``compose_grid`` laid out, cut back out of the grid, pixel for pixel."""
    columns, rows = _layout(count)
    width, height = grid.width // columns, grid.height // rows
    cells = []
    for index in range(count):
        left, top = (index % columns) * width, (index // columns) * height
        cells.append(grid.crop((left, top, left + width, top + height)))
    return cells

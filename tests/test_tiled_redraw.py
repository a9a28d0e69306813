"""An upscale's redraw past one call's size, made in overlapping tiles and blended (models.operations.tiled)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from models.engine import DiffusionEngine
from models.operations import tiled
from models.tiny import TINY_MODEL_ID
from models.types import BatchSpec, GenerationBatch, ImageTask, Operation


def test_tiles_cover_the_image_and_neighbours_overlap() -> None:
    placed = tiled.tiles(256, 128, 96)
    covered = np.zeros((128, 256), dtype=int)
    for tile in placed:
        covered[tile.top : tile.top + tile.height, tile.left : tile.left + tile.width] += 1
        assert (tile.width, tile.height) == (96, 96)
    assert covered.min() >= 1 and covered.max() >= 2  # every pixel drawn, neighbours sharing some
    assert tiled.tiles(64, 64, 96) == [tiled.Tile(0, 0, 64, 64)]  # smaller than a tile: one call


def test_blending_keeps_each_tile_where_it_is_alone_and_ramps_between() -> None:
    placed = [tiled.Tile(0, 0, 64, 32), tiled.Tile(48, 0, 64, 32)]  # 16 px shared
    black, white = Image.new("RGB", (64, 32), (0, 0, 0)), Image.new("RGB", (64, 32), (255, 255, 255))
    blended = np.asarray(tiled.blend([black, white], placed, 112, 32))[0, :, 0]
    assert (blended[:48] == 0).all() and (blended[64:] == 255).all()
    shared = blended[48:64]
    assert (np.diff(shared.astype(int)) >= 0).all() and 0 < shared[8] < 255  # a ramp, no step


def test_an_upscale_redraw_in_tiles_is_the_full_size_and_reproducible(tiny_engine: DiffusionEngine) -> None:
    source = Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 128, 3), dtype=np.uint8), "RGB")
    spec = BatchSpec(
        model=TINY_MODEL_ID,
        operation=Operation.UPSCALE,
        width=256,
        height=128,
        steps=4,
        guidance=7.0,
        scheduler="EulerAncestralDiscreteScheduler",
        strength=0.5,
        redraw_tile=96,
    )
    batch = GenerationBatch(spec=spec, tasks=(ImageTask("a harbour", "", 5, init_image=source),))
    first, again = tiny_engine.run(batch), tiny_engine.run(batch)
    assert first.images[0].size == (256, 128) and first.pipeline_calls >= 1
    assert np.array_equal(np.asarray(first.images[0]), np.asarray(again.images[0]))
    enlarged = np.asarray(source.resize((256, 128), Image.Resampling.LANCZOS), dtype=int)
    assert np.abs(np.asarray(first.images[0], dtype=int) - enlarged).mean() > 1  # redrawn, not only resized

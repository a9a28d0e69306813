"""Draws docs/edit_loop.png: one edit loop on builtin:tiny, through the worker's own code.

A picture (shapes on a gradient, so the geometry shows), then Zoom Out 2x of it, then Vary (Region)
of the left half of the zoomed image. The tiny model draws noise where it draws; what matters is
where: the kept pixels are the source's own.

    python docs/edit_loop.py
"""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_png import picture
from bot.gpu.runner import image_tasks
from bot.images.edits import region_mask, zoom_mask
from bot.jobs.generation import generation_request
from bot.jobs.recipe import JobKind
from models.engine import DiffusionEngine, EngineConfig
from models.tiny import TINY_MODEL_ID
from models.types import GenerationBatch
from tests.recipes import a_recipe

SIDE = 128
SHOWN = 2 * SIDE  # each panel drawn at twice its size, pixel for pixel
CAPTION = 18


def edit(engine: DiffusionEngine, source: Image.Image, kind: JobKind, mask: str, seed: int) -> Image.Image:
    recipe = a_recipe(model=TINY_MODEL_ID, width=SIDE, height=SIDE, steps=8, guidance=7.0, seeds=(seed,))
    edited = recipe.as_edit(1, 0, kind, mask, (SIDE, SIDE))
    request = generation_request(1, edited.with_seeds((seed,)), png(source))
    return engine.run(GenerationBatch(request.spec, image_tasks(request))).images[0]


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def main() -> None:
    with tempfile.TemporaryDirectory() as cache:
        engine = DiffusionEngine(EngineConfig(device="cpu", cache_dir=Path(cache)))
        source = picture(SIDE, seed=3)
        zoomed = edit(engine, source, JobKind.ZOOM, zoom_mask("2"), 11)
        region = edit(engine, zoomed, JobKind.REGION, region_mask("Left half"), 12)
    panels = [("the picture", source), ("Zoom Out 2x", zoomed), ("Vary (Region): left half", region)]
    gap = 8
    sheet = Image.new("RGB", (len(panels) * (SHOWN + gap) + gap, SHOWN + CAPTION + 2 * gap), "white")
    draw = ImageDraw.Draw(sheet)
    for index, (caption, image) in enumerate(panels):
        x = gap + index * (SHOWN + gap)
        sheet.paste(image.resize((SHOWN, SHOWN), Image.Resampling.NEAREST), (x, gap))
        draw.text((x, gap + SHOWN + 3), caption, fill="black")
    out = ROOT / "docs" / "edit_loop.png"
    sheet.save(out, optimize=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
